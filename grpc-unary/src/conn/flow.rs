//! Flow control (RFC 9113 section 5.2) in both directions.

use super::*;

impl State {
    pub(super) fn on_data(
        &mut self,
        stream: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
        calls: &mut [Call],
    ) -> Result<(), Error> {
        let len = i64::from(flow_len);
        if len > self.recv_window {
            return Err(self.conn_error(
                ErrorCode::FLOW_CONTROL_ERROR,
                "DATA exceeds the connection receive window",
            ));
        }
        // Whatever stream the data is for, it used connection window: give it back.
        self.recv_window -= len;
        self.recv_unacked += flow_len;
        if self.recv_unacked >= WINDOW_REFILL_AT {
            frame::put_window_update(&mut self.out, 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
        let Some(call) = self.active(stream, calls)? else {
            return Ok(());
        };
        if call.got_end {
            return Err(self.conn_error(ErrorCode::STREAM_CLOSED, "DATA after END_STREAM"));
        }
        if len > call.recv_window {
            call.fail(protocol_error(
                ErrorCode::FLOW_CONTROL_ERROR,
                "DATA exceeds the stream receive window",
            ));
            return Ok(());
        }
        call.recv_window -= len;
        if !call.response_started {
            call.fail(protocol_error(
                ErrorCode::PROTOCOL_ERROR,
                "DATA before the response headers",
            ));
            return Ok(());
        }
        if let Err(e) = call.message.push(data) {
            call.fail(body_error(e));
            return Ok(());
        }
        if end_stream {
            call.got_end = true;
            if call.status.is_none() {
                call.fail(protocol_error(
                    ErrorCode::PROTOCOL_ERROR,
                    "response ended without trailers (no grpc-status)",
                ));
            }
            return Ok(());
        }
        call.recv_unacked += flow_len;
        if call.recv_unacked >= WINDOW_REFILL_AT {
            frame::put_window_update(&mut self.out, call.stream, call.recv_unacked);
            call.recv_window += i64::from(call.recv_unacked);
            call.recv_unacked = 0;
        }
        Ok(())
    }

    pub(super) fn on_window_update(
        &mut self,
        stream: u32,
        increment: u32,
        calls: &mut [Call],
    ) -> Result<(), Error> {
        if stream == 0 {
            self.send_window += i64::from(increment);
            if self.send_window > i64::from(MAX_WINDOW) {
                return Err(self.conn_error(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "connection send window above 2^31-1",
                ));
            }
            return Ok(());
        }
        if let Some(call) = self.active(stream, calls)? {
            call.send_window += i64::from(increment);
            if call.send_window > i64::from(MAX_WINDOW) {
                call.fail(protocol_error(
                    ErrorCode::FLOW_CONTROL_ERROR,
                    "stream send window above 2^31-1",
                ));
            }
        }
        Ok(())
    }
}
