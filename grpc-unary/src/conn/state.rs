//! Connection state: what the server announced, both directions' windows, open streams,
//! and the dispatch of each received frame.

use super::*;

pub(super) struct State {
    pub(super) out: Vec<u8>,
    pub(super) decoder: HeaderDecoder,
    pub(super) limits: Limits,
    pub(super) authority: String,
    pub(super) settings_seen: bool,
    pub(super) peer_max_frame: u32,
    pub(super) peer_initial_window: u32,
    pub(super) peer_max_streams: Option<u32>,
    pub(super) peer_max_header_list: Option<u32>,
    pub(super) peer_table_size: u32,
    pub(super) announce_table_size: bool,
    pub(super) send_window: i64,
    pub(super) recv_window: i64,
    pub(super) recv_unacked: u32,
    pub(super) next_stream: u32,
    pub(super) last_stream: u32,
    pub(super) goaway: Option<GoAwayInfo>,
    pub(super) dead: Option<String>,
    pub(super) pending: Option<PendingBlock>,
}

impl State {
    pub(super) fn new(limits: Limits, authority: String) -> Self {
        State {
            out: Vec::with_capacity(4096),
            decoder: HeaderDecoder::new(),
            limits,
            authority,
            settings_seen: false,
            peer_max_frame: DEFAULT_MAX_FRAME_SIZE,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_streams: None,
            peer_max_header_list: None,
            peer_table_size: 4096,
            announce_table_size: true,
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            next_stream: 1,
            last_stream: 0,
            goaway: None,
            dead: None,
            pending: None,
        }
    }

    pub(super) fn check_usable(&self) -> Result<(), Error> {
        if let Some(reason) = &self.dead {
            return Err(Error::Unusable {
                reason: reason.clone(),
            });
        }
        if let Some(g) = &self.goaway {
            return Err(g.to_error());
        }
        Ok(())
    }

    /// How many streams may be opened at once: the server's SETTINGS_MAX_CONCURRENT_STREAMS
    /// (unlimited until it says otherwise), at least 1 so that a limit of 0 is reported by
    /// [`State::open_stream`].
    pub(super) fn stream_room(&self) -> usize {
        self.peer_max_streams
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
            .max(1)
    }

    pub(super) fn open_stream(&mut self) -> Result<u32, Error> {
        if self.peer_max_streams == Some(0) {
            return Err(Error::Unusable {
                reason: "server allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)".into(),
            });
        }
        let id = self.next_stream;
        if id > MAX_STREAM_ID {
            return Err(Error::Unusable {
                reason: "stream identifiers exhausted".into(),
            });
        }
        self.next_stream = id.saturating_add(2);
        self.last_stream = id;
        Ok(id)
    }

    /// Records a connection error: GOAWAY is queued and the connection is dead.
    pub(super) fn conn_error(&mut self, code: ErrorCode, detail: impl Into<String>) -> Error {
        let detail = detail.into();
        frame::put_goaway(&mut self.out, 0, code);
        self.dead = Some(format!("protocol violation by server ({code}): {detail}"));
        Error::Protocol { code, detail }
    }

    /// Processes one frame. `Err` is a connection error; call-level failures are stored in
    /// the calls.
    pub(super) fn handle(
        &mut self,
        head: FrameHeader,
        payload: &[u8],
        calls: &mut [Call],
    ) -> Result<(), Error> {
        let frame = match frame::parse(head, payload) {
            Ok(f) => f,
            Err(e) => return Err(self.conn_error(e.code, e.detail)),
        };
        if !self.settings_seen && !matches!(frame, Frame::Settings { ack: false, .. }) {
            return Err(self.conn_error(
                ErrorCode::PROTOCOL_ERROR,
                "server preface does not start with SETTINGS",
            ));
        }
        if let Some(p) = &self.pending {
            if !matches!(frame, Frame::Continuation { stream, .. } if stream == p.stream) {
                return Err(self.conn_error(
                    ErrorCode::PROTOCOL_ERROR,
                    "frame interleaved in a header block",
                ));
            }
        }
        match frame {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.on_data(stream, end_stream, data, flow_len, calls),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
            } => {
                self.pending = Some(PendingBlock {
                    stream,
                    end_stream,
                    block: Vec::new(),
                });
                self.on_fragment(fragment, end_headers, calls)
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                if self.pending.is_none() {
                    return Err(self.conn_error(
                        ErrorCode::PROTOCOL_ERROR,
                        "CONTINUATION without a preceding HEADERS",
                    ));
                }
                self.on_fragment(fragment, end_headers, calls)
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => Ok(()),
            Frame::RstStream { stream, code } => {
                if let Some(call) = self.active(stream, calls)? {
                    if !call.got_end {
                        call.fail(Error::Reset { code });
                    }
                }
                Ok(())
            }
            Frame::Settings { ack, params } => {
                if ack {
                    return Ok(());
                }
                self.on_settings(params, calls)?;
                frame::put_settings_ack(&mut self.out);
                self.settings_seen = true;
                Ok(())
            }
            Frame::PushPromise { .. } => Err(self.conn_error(
                ErrorCode::PROTOCOL_ERROR,
                "PUSH_PROMISE although push is disabled",
            )),
            Frame::Ping { ack, payload } => {
                if !ack {
                    frame::put_ping_ack(&mut self.out, &payload);
                }
                Ok(())
            }
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => {
                self.on_goaway(last_stream, code, debug, calls);
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                self.on_window_update(stream, increment, calls)
            }
        }
    }

    /// The call on `stream`; `None` for an earlier, closed stream; a connection error for
    /// a stream the server may not use.
    pub(super) fn active<'c>(
        &mut self,
        stream: u32,
        calls: &'c mut [Call],
    ) -> Result<Option<&'c mut Call>, Error> {
        if let Some(call) = calls.iter_mut().find(|c| c.stream == stream) {
            return Ok(Some(call));
        }
        if stream % 2 == 1 && stream <= self.last_stream {
            return Ok(None);
        }
        Err(self.conn_error(
            ErrorCode::PROTOCOL_ERROR,
            format!("frame on idle stream {stream}"),
        ))
    }
}

pub(super) fn protocol_error(code: ErrorCode, detail: &str) -> Error {
    Error::Protocol {
        code,
        detail: detail.to_owned(),
    }
}

pub(super) fn body_error(e: BodyError) -> Error {
    match e {
        BodyError::TooLarge { size, limit } => Error::MessageTooLarge { size, limit },
        BodyError::Compressed => protocol_error(
            ErrorCode::PROTOCOL_ERROR,
            "compressed response message, but no compression was negotiated",
        ),
        BodyError::BadFlag(f) => Error::Protocol {
            code: ErrorCode::PROTOCOL_ERROR,
            detail: format!("invalid message compressed-flag {f}"),
        },
        BodyError::SecondMessage => protocol_error(
            ErrorCode::PROTOCOL_ERROR,
            "unary response carries more than one message",
        ),
    }
}
