//! The server's SETTINGS and GOAWAY.

use super::*;

pub(super) struct GoAwayInfo {
    pub(super) code: ErrorCode,
    pub(super) last_stream: u32,
    pub(super) debug: String,
}

impl GoAwayInfo {
    pub(super) fn to_error(&self) -> Error {
        Error::GoAway {
            code: self.code,
            last_stream_id: self.last_stream,
            debug: self.debug.clone(),
        }
    }
}

impl State {
    pub(super) fn on_settings(&mut self, params: &[u8], calls: &mut [Call]) -> Result<(), Error> {
        for (id, value) in frame::settings_params(params) {
            match id {
                setting::HEADER_TABLE_SIZE if value != self.peer_table_size => {
                    self.peer_table_size = value;
                    self.announce_table_size = true;
                }
                setting::ENABLE_PUSH if value != 0 => {
                    return Err(self.conn_error(
                        ErrorCode::PROTOCOL_ERROR,
                        format!("server sent SETTINGS_ENABLE_PUSH {value}"),
                    ));
                }
                setting::MAX_CONCURRENT_STREAMS => self.peer_max_streams = Some(value),
                setting::INITIAL_WINDOW_SIZE => {
                    if value > MAX_WINDOW {
                        return Err(self.conn_error(
                            ErrorCode::FLOW_CONTROL_ERROR,
                            format!("SETTINGS_INITIAL_WINDOW_SIZE {value} above 2^31-1"),
                        ));
                    }
                    // RFC 9113 section 6.9.2: open streams' windows move by the difference.
                    let delta = i64::from(value) - i64::from(self.peer_initial_window);
                    self.peer_initial_window = value;
                    for call in calls.iter_mut() {
                        call.send_window += delta;
                    }
                    if calls.iter().any(|c| c.send_window > i64::from(MAX_WINDOW)) {
                        return Err(self.conn_error(
                            ErrorCode::FLOW_CONTROL_ERROR,
                            "stream window above 2^31-1 after SETTINGS",
                        ));
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(DEFAULT_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE).contains(&value) {
                        return Err(self.conn_error(
                            ErrorCode::PROTOCOL_ERROR,
                            format!("SETTINGS_MAX_FRAME_SIZE {value} out of range"),
                        ));
                    }
                    self.peer_max_frame = value;
                }
                setting::MAX_HEADER_LIST_SIZE => self.peer_max_header_list = Some(value),
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn on_goaway(
        &mut self,
        last_stream: u32,
        code: ErrorCode,
        debug: &[u8],
        calls: &mut [Call],
    ) {
        let debug = debug.get(..MAX_GOAWAY_DEBUG).unwrap_or(debug);
        let info = GoAwayInfo {
            code,
            last_stream,
            debug: String::from_utf8_lossy(debug).into_owned(),
        };
        for call in calls.iter_mut() {
            // Streams up to last_stream may still complete after a graceful GOAWAY.
            if !call.got_end && (call.stream > last_stream || code != ErrorCode::NO_ERROR) {
                call.fail(info.to_error());
            }
        }
        self.goaway = Some(info);
    }
}
