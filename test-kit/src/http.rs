//! An in-process HTTP/1.1 server on a loopback port for tests that play a PCCS (or any
//! upstream) with a twist of their own: slow, failing, counting. One thread per connection,
//! one request per connection (`Connection: close`); the handler sees the method and target
//! after the request head has been read in full.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

/// What the handler answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// Serves `handler(method, target)` on 127.0.0.1 (a port the kernel picks) until the test
/// process ends; returns `http://127.0.0.1:PORT`. A connection that closes before the end of
/// its request head is dropped without calling the handler.
pub fn serve(handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let handler = Arc::clone(&handler);
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if header == "\r\n" || header == "\n" => break,
                        Ok(_) => {}
                    }
                }
                let mut words = line.split(' ');
                let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let reply = handler(method, target);
                let mut head = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (name, value) in &reply.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&reply.body);
            });
        }
    });
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::net::TcpStream;

    fn get(url: &str, request: &str) -> String {
        let mut tcp = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        // The end of the request: a head cut short is then seen as cut short, not as slow.
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn the_handler_sees_method_and_target_and_its_reply_is_sent() {
        let url = serve(|method, target| Reply {
            status: 404,
            headers: vec![("X-Seen", format!("{method} {target}"))],
            body: b"nothing".to_vec(),
        });
        let answer = get(&url, "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 404 X\r\n"), "{answer}");
        assert!(answer.contains("X-Seen: GET /a?b=1\r\n"), "{answer}");
        assert!(answer.contains("Content-Length: 7\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nnothing"), "{answer}");
    }

    #[test]
    fn a_request_cut_short_is_not_handled() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let url = serve(move |_, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Reply {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            }
        });
        assert_eq!(get(&url, "GET / HTTP/1.1\r\nHost: x\r\n"), "");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
