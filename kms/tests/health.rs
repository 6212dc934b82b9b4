//! The health endpoint (`--health-listen`) of the real `kms` process, over plain TCP on
//! loopback: `/livez` and `/readyz` answer 200 once the server is up (single mode), anything
//! else 404, an oversized request head 431, a bad address is a usage error, and the answers
//! carry no policy value or secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// The health address from the audit log's start record.
fn health_addr(fx: &Fixture) -> String {
    let start = fx.kms.wait_audit(|r| r["event"] == "start");
    let reason = start["reason"].as_str().unwrap();
    reason
        .split("health on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no health address in {reason}"))
        .to_owned()
}

/// Sends `request` and returns the whole response.
fn exchange(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn get(addr: &str, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.30\r\n\r\n")
            .as_bytes(),
    )
}

fn body(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or_default()
}

#[test]
fn livez_and_readyz_answer_200_once_the_server_is_up() {
    let fx = Fixture::start_with(
        "health",
        |_| {},
        vec!["--health-listen".into(), "127.0.0.1:0".into()],
    );
    let addr = health_addr(&fx);
    let live = get(&addr, "/livez");
    assert!(live.starts_with("HTTP/1.1 200 OK\r\n"), "{live}");
    assert!(live.contains("Content-Type: application/json"), "{live}");
    assert_eq!(body(&live), "{\"live\":true}\n");
    let ready = get(&addr, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
    assert_eq!(body(&ready), "{\"ready\":true}\n");

    // The gRPC server the readiness stands for does serve.
    fx.client(&fx.app).get_decoded("image_key").unwrap();

    for path in ["/", "/metrics", "/healthz", "/readyz/x", "/livez/../readyz"] {
        let other = get(&addr, path);
        assert!(other.starts_with("HTTP/1.1 404 "), "{path}: {other}");
    }
    let post = exchange(&addr, b"POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("Allow: GET"), "{post}");
    assert_logs_clean(&fx.kms, &secrets());
}

#[test]
fn an_oversized_request_head_is_refused_and_the_endpoint_keeps_serving() {
    let fx = Fixture::start_with(
        "health-big",
        |_| {},
        vec!["--health-listen".into(), "127.0.0.1:0".into()],
    );
    let addr = health_addr(&fx);
    let huge = [
        b"GET /readyz HTTP/1.1\r\nX-Filler: ".as_slice(),
        &[b'a'; 64 * 1024],
        b"\r\n\r\n",
    ]
    .concat();
    let refused = exchange(&addr, &huge);
    assert!(
        refused.starts_with("HTTP/1.1 431 "),
        "{}",
        &refused[..refused.len().min(200)]
    );
    // Silent connections hold a slot for the read timeout only, and more than the limit are
    // closed at once: the probes still get through after the timeout.
    let silent: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let ready = get(&addr, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
    drop(silent);
}

#[test]
fn a_bad_health_address_is_a_usage_error() {
    assert_usage_error("--health-listen", "localhost", "IP:PORT");
}

#[test]
fn a_health_address_in_use_stops_the_start_naming_the_flag() {
    let (addr, err) = start_error_with_address_taken("health-taken", "--health-listen");
    assert!(
        err.contains(&format!(
            "serving /livez and /readyz on {addr} (--health-listen)"
        )),
        "{err}"
    );
}
