//! The per-call state machine: one stream's response headers, message and trailers.

use super::*;

pub(super) struct Call {
    pub(super) stream: u32,
    /// Whether its HEADERS were queued (else there is no stream to reset).
    pub(super) opened: bool,
    pub(super) send_window: i64,
    pub(super) recv_window: i64,
    pub(super) recv_unacked: u32,
    pub(super) sent_end: bool,
    pub(super) got_end: bool,
    pub(super) response_started: bool,
    pub(super) message: MessageReader,
    pub(super) status: Option<(Code, String)>,
    pub(super) failure: Option<Error>,
}

impl Call {
    pub(super) fn new(stream: u32, st: &State) -> Self {
        Call {
            stream,
            opened: false,
            send_window: i64::from(st.peer_initial_window),
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            sent_end: false,
            got_end: false,
            response_started: false,
            message: MessageReader::new(st.limits.max_message),
            status: None,
            failure: None,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.got_end || self.failure.is_some()
    }

    /// Keeps the first failure: later ones are consequences.
    pub(super) fn fail(&mut self, e: Error) {
        if self.failure.is_none() {
            self.failure = Some(e);
        }
    }

    pub(super) fn on_headers(
        &mut self,
        f: ResponseFields,
        end_stream: bool,
        over: bool,
        limit: u32,
    ) {
        if over {
            self.fail(Error::Protocol {
                code: ErrorCode::PROTOCOL_ERROR,
                detail: format!("response header list exceeds {limit} bytes"),
            });
            return;
        }
        if self.response_started {
            self.on_trailers(f, end_stream);
            return;
        }
        let status = match f.status {
            Some(Some(s)) => s,
            Some(None) => return self.fail_malformed("invalid :status"),
            None => return self.fail_malformed("response headers lack :status"),
        };
        if f.other_pseudo {
            return self.fail_malformed("unexpected pseudo-header in response");
        }
        if (100..200).contains(&status) {
            if end_stream || status == 101 {
                return self.fail_malformed("informational response ends the stream");
            }
            return; // 1xx: the final response follows
        }
        if status != 200 {
            // As gRPC clients do: a grpc-status in a non-200 response wins over the mapping.
            if let (true, Some(Some(code))) = (end_stream, f.grpc_status) {
                self.got_end = true;
                self.status = Some((Code::from_u32(code), f.grpc_message.unwrap_or_default()));
            } else {
                self.fail(Error::HttpStatus { status });
            }
            return;
        }
        match &f.content_type {
            Some((true, _)) => {}
            Some((false, shown)) => {
                return self
                    .fail_malformed(&format!("content-type {shown:?} is not application/grpc"));
            }
            // Trailers-only responses may omit it; a response with a body may not.
            None if end_stream => {}
            None => return self.fail_malformed("response lacks content-type"),
        }
        self.response_started = true;
        if end_stream {
            self.got_end = true;
            self.take_status(f);
        }
    }

    pub(super) fn on_trailers(&mut self, f: ResponseFields, end_stream: bool) {
        if !end_stream {
            return self.fail_malformed("trailers without END_STREAM");
        }
        self.got_end = true;
        if f.status.is_some() || f.other_pseudo {
            return self.fail_malformed("pseudo-header in trailers");
        }
        self.take_status(f);
    }

    pub(super) fn take_status(&mut self, f: ResponseFields) {
        match f.grpc_status {
            Some(Some(code)) => {
                self.status = Some((Code::from_u32(code), f.grpc_message.unwrap_or_default()));
            }
            Some(None) => self.fail_malformed("invalid grpc-status"),
            None => self.fail_malformed("response ended without grpc-status"),
        }
    }

    pub(super) fn fail_malformed(&mut self, detail: &str) {
        self.fail(protocol_error(ErrorCode::PROTOCOL_ERROR, detail));
    }

    /// The result of a finished call.
    pub(super) fn outcome(&mut self) -> Result<Zeroizing<Vec<u8>>, Error> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        match self.status.take() {
            Some((Code::Ok, _)) => {
                if self.message.is_partial() {
                    return Err(protocol_error(
                        ErrorCode::PROTOCOL_ERROR,
                        "response ended inside a message",
                    ));
                }
                self.message.take().ok_or(protocol_error(
                    ErrorCode::PROTOCOL_ERROR,
                    "OK status without a response message",
                ))
            }
            Some((code, message)) => Err(Error::Status { code, message }),
            None => Err(protocol_error(
                ErrorCode::PROTOCOL_ERROR,
                "response ended without grpc-status",
            )),
        }
    }
}
