//! Header blocks: queueing the request HEADERS and reassembling, HPACK-decoding and
//! reading the response header blocks (HEADERS + CONTINUATION).

use super::*;

/// A header block being reassembled from HEADERS + CONTINUATION frames.
pub(super) struct PendingBlock {
    pub(super) stream: u32,
    pub(super) end_stream: bool,
    pub(super) block: Vec<u8>,
}

impl State {
    /// Queues the request HEADERS (+CONTINUATION) for `stream`; DATA follows.
    pub(super) fn queue_headers(
        &mut self,
        stream: u32,
        path: &str,
        timeout: &str,
    ) -> Result<(), Error> {
        let fields = hpack::request_fields(path, &self.authority, timeout, USER_AGENT);
        if let Some(max) = self.peer_max_header_list {
            let size = hpack::list_size(&fields);
            if u64::try_from(size).unwrap_or(u64::MAX) > u64::from(max) {
                return Err(Error::InvalidRequest {
                    detail: format!(
                        "request headers ({size} bytes) exceed the server's limit of {max}"
                    ),
                });
            }
        }
        let mut block = Vec::with_capacity(128 + path.len());
        hpack::encode(&mut block, self.announce_table_size, &fields);
        self.announce_table_size = false;
        frame::put_headers(&mut self.out, stream, &block, self.peer_max_frame, false);
        Ok(())
    }

    pub(super) fn on_fragment(
        &mut self,
        fragment: &[u8],
        end_headers: bool,
        calls: &mut [Call],
    ) -> Result<(), Error> {
        let max_block = self.limits.max_block();
        let Some(pending) = &mut self.pending else {
            return Ok(());
        };
        if pending.block.len() + fragment.len() > max_block {
            return Err(self.conn_error(
                ErrorCode::ENHANCE_YOUR_CALM,
                format!("header block larger than {max_block} bytes"),
            ));
        }
        pending.block.extend_from_slice(fragment);
        if !end_headers {
            return Ok(());
        }
        let Some(PendingBlock {
            stream,
            end_stream,
            block,
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let max_list = usize::try_from(self.limits.max_header_list).unwrap_or(usize::MAX);
        let mut fields = ResponseFields::default();
        let decoded = self
            .decoder
            .decode(&block, max_list, |name, value| fields.record(name, value));
        let over = match decoded {
            Ok(over) => over,
            Err(hpack::DecodeError::Compression(detail)) => {
                return Err(
                    self.conn_error(ErrorCode::COMPRESSION_ERROR, format!("hpack: {detail}"))
                );
            }
        };
        let max_header_list = self.limits.max_header_list;
        if let Some(call) = self.active(stream, calls)? {
            if call.got_end {
                return Err(self.conn_error(ErrorCode::STREAM_CLOSED, "HEADERS after END_STREAM"));
            }
            call.on_headers(fields, end_stream, over, max_header_list);
        }
        Ok(())
    }
}

/// The header fields of a response block that the client looks at.
#[derive(Default)]
pub(super) struct ResponseFields {
    pub(super) status: Option<Option<u16>>,
    pub(super) other_pseudo: bool,
    pub(super) content_type: Option<(bool, String)>,
    pub(super) grpc_status: Option<Option<u32>>,
    pub(super) grpc_message: Option<String>,
}

impl ResponseFields {
    pub(super) fn record(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b":status" => {
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .filter(|s| s.len() == 3)
                    .and_then(|s| s.parse().ok());
                // A repeated :status is malformed; remember it as invalid.
                self.status = Some(if self.status.is_some() { None } else { parsed });
            }
            b"content-type" => {
                let shown = String::from_utf8_lossy(value.get(..64).unwrap_or(value)).into_owned();
                self.content_type = Some((grpc::is_grpc_content_type(value), shown));
            }
            b"grpc-status" => self.grpc_status = Some(grpc::parse_status(value)),
            b"grpc-message" => self.grpc_message = Some(grpc::decode_grpc_message(value)),
            _ if name.first() == Some(&b':') => self.other_pseudo = true,
            _ => {}
        }
    }
}
