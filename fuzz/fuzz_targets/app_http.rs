//! Fuzz target: the app's HTTP/1.1 request framing (`app/src/http.rs`), fed by a client that
//! sends arbitrary bytes in reads of arbitrary size: the request reader (head parsing, header
//! limits, `Content-Length` bodies, `Expect: 100-continue`, keep-alive and pipelining) must
//! never panic, and every request it accepts must be within its limits.
#![no_main]

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

// The app is a binary (SQLite, rustls, mio); its framing module depends on httparse and the
// app's JSON writer only, so both are compiled here as they are.
#[path = "../../app/src/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "../../app/src/pyjson.rs"]
#[allow(dead_code)]
mod pyjson;

/// The client: hands out its bytes `chunk` at a time, then EOF; collects what is written.
struct Client<'a> {
    input: &'a [u8],
    chunk: usize,
    written: Vec<u8>,
}

impl Read for Client<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(out.len()).min(self.input.len());
        let (head, rest) = self.input.split_at(n);
        out[..n].copy_from_slice(head);
        self.input = rest;
        Ok(n)
    }
}

impl Write for Client<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl http::Timed for Client<'_> {
    fn set_deadline(&mut self, _deadline: Instant) {}
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let mut client = Client {
        input,
        chunk: usize::from(chunk).max(1),
        written: Vec::new(),
    };
    let mut reader = http::RequestReader::default();
    let wait = Duration::from_secs(1);
    // Every accepted request consumes at least one byte, so this ends with the input.
    for _ in 0..=input.len() {
        match reader.read_request(&mut client, wait, wait) {
            Ok(Some(request)) => {
                assert!(request.body.len() as u64 <= http::MAX_BODY_BYTES);
                assert!(request.minor_version <= 1);
                let mut out = Vec::new();
                http::Response::error(400, &request.target).write_to(
                    &mut out,
                    request.method == "HEAD",
                    request.keep_alive,
                    request.minor_version == 0,
                );
            }
            Ok(None) => break,
            Err(e) => {
                let _ = e.response();
                break;
            }
        }
    }
});
