//! Hostile and broken clients against the real binary: each gets its documented 4xx (or a
//! timely close) and the server keeps serving everyone else afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    App, TempDir, TestCert, agent, get, parse_response, put_form, raw_exchange, raw_tls,
    read_until_close, temp_dir,
};

/// Starts an app with one customer stored, for "still serving" checks.
fn app_with_customer(name: &str, extra: &[&str]) -> (TempDir, TestCert, App) {
    let dir = temp_dir(&format!("app-{name}"));
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), extra);
    assert_eq!(
        put_form(&agent(&cert), &app.url("/customer/1"), "data=Tom").0,
        200
    );
    (dir, cert, app)
}

fn assert_still_serving(app: &App, cert: &TestCert) {
    assert_eq!(
        get(&agent(cert), &app.url("/customer/1")),
        (200, "{\"1\": \"Tom\"}\n".to_owned())
    );
}

fn assert_json_error(body: &str) {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(value["error"].is_string(), "{body}");
    assert!(body.ends_with("}\n"), "{body:?}");
}

#[test]
fn malformed_request_lines_get_400_and_the_server_keeps_serving() {
    let (_dir, cert, app) = app_with_customer("malformed", &[]);
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /customer/1 HTTP/9.9\r\n\r\n",
        b"GET /customer/1\r\n\r\n",
        b"GET /customer/1 HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET  /customer/1 HTTP/1.1\r\n\r\n",
        b"PUT /customer/1 HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
    ] {
        let (status, body) = parse_response(&raw_exchange(&app, &cert, request));
        assert_eq!(status, 400, "{request:?}");
        assert_json_error(&body);
    }
    assert_still_serving(&app, &cert);
}

#[test]
fn a_put_without_data_is_400() {
    let (_dir, cert, app) = app_with_customer("nodata", &[]);
    let agent = agent(&cert);
    for body in ["", "name=Tom", "Data=Tom"] {
        let (status, text) = put_form(&agent, &app.url("/customer/2"), body);
        assert_eq!(status, 400, "{body:?}");
        assert_json_error(&text);
    }
    let (status, _) = common::status_body(
        agent
            .put(&app.url("/customer/2"))
            .header("Content-Type", "application/json")
            .send(r#"{"name": "Tom"}"#),
    );
    assert_eq!(status, 400);
    assert_eq!(
        get(&agent, &app.url("/customer/2")).0,
        404,
        "nothing was stored"
    );
    assert_still_serving(&app, &cert);
}

#[test]
fn an_oversized_body_is_413_before_it_is_read() {
    let (_dir, cert, app) = app_with_customer("413", &[]);
    let body = format!("data={}", "x".repeat(100_000));
    let request = format!(
        "PUT /customer/2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = parse_response(&raw_exchange(&app, &cert, request.as_bytes()));
    assert_eq!(status, 413);
    assert_json_error(&text);
    // The same through curl (which then stops sending).
    let out = common::curl(
        &cert,
        &[
            "-X",
            "PUT",
            &format!("https://localhost:{}/customer/2", app.port),
            "-d",
            &body,
            "-w",
            " %{http_code}",
        ],
    );
    assert!(out.ends_with(" 413"), "{out}");
    assert_still_serving(&app, &cert);
}

#[test]
fn non_utf8_data_is_400() {
    let (_dir, cert, app) = app_with_customer("utf8", &[]);
    let agent = agent(&cert);
    let (status, text) = put_form(&agent, &app.url("/customer/2"), "data=%FF%FE");
    assert_eq!(status, 400);
    assert_json_error(&text);
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", &b"data=\xff\xfe"[..]),
        ("application/json", b"{\"data\": \"\xff\"}"),
    ] {
        let request = [
            format!(
                "PUT /customer/2 HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            body,
        ]
        .concat();
        let (status, text) = parse_response(&raw_exchange(&app, &cert, &request));
        assert_eq!(status, 400, "{content_type}");
        assert_json_error(&text);
    }
    let (status, _) = get(&agent, &app.url("/customer/%FF"));
    assert_eq!(status, 400, "an id that is not UTF-8");
    assert_still_serving(&app, &cert);
}

#[test]
fn chunked_request_bodies_are_411() {
    let (_dir, cert, app) = app_with_customer("chunked", &[]);
    let request = b"PUT /customer/2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n8\r\ndata=Tom\r\n0\r\n\r\n";
    let (status, text) = parse_response(&raw_exchange(&app, &cert, request));
    assert_eq!(status, 411);
    assert_json_error(&text);
    assert_still_serving(&app, &cert);
}

#[test]
fn an_unsupported_content_type_is_415() {
    let (_dir, cert, app) = app_with_customer("415", &[]);
    let out = common::curl(
        &cert,
        &[
            "-X",
            "PUT",
            &format!("https://localhost:{}/customer/2", app.port),
            "-F",
            "data=Tom",
            "-w",
            " %{http_code}",
        ],
    );
    assert!(out.ends_with("\n 415"), "{out}");
    assert_still_serving(&app, &cert);
}

#[test]
fn an_oversized_head_is_431() {
    let (_dir, cert, app) = app_with_customer("431", &[]);
    let request = format!(
        "GET /customer/1 HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (status, text) = parse_response(&raw_exchange(&app, &cert, request.as_bytes()));
    assert_eq!(status, 431);
    assert_json_error(&text);
    assert_still_serving(&app, &cert);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_dir, cert, app) = app_with_customer("pipeline", &[]);
    let request = b"PUT /customer/2 HTTP/1.1\r\nContent-Length: 10\r\n\r\ndata=JerryGET /customer/2 HTTP/1.1\r\n\r\nGET /customer/1 HTTP/1.1\r\nConnection: close\r\n\r\n";
    let text = raw_exchange(&app, &cert, request);
    let bodies: Vec<&str> = text
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| r.split_once("\r\n\r\n").unwrap().1)
        .collect();
    assert_eq!(
        bodies,
        [
            "{\"2\": \"Jerry\"}\n",
            "{\"2\": \"Jerry\"}\n",
            "{\"1\": \"Tom\"}\n"
        ]
    );
}

#[test]
fn a_slow_client_gets_408_after_the_request_timeout() {
    let (_dir, cert, app) = app_with_customer("slow", &["--request-timeout", "1"]);
    let mut stream = raw_tls(&app, &cert);
    stream
        .write_all(b"GET /customer/1 HTTP/1.1\r\nHost: lo")
        .unwrap();
    stream.flush().unwrap();
    let started = Instant::now();
    let (status, text) = parse_response(&read_until_close(&mut stream));
    assert_eq!(status, 408);
    assert_json_error(&text);
    // The 1 s request timeout plus a wide margin, below raw_tls's 20 s read timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_still_serving(&app, &cert);
}

#[test]
fn a_client_that_never_handshakes_is_dropped_after_the_timeout() {
    let (_dir, cert, app) = app_with_customer("silent", &["--request-timeout", "1"]);
    let mut tcp = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    // EOF or reset: either way the server gave up on us.
    let n = tcp.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    let waited = started.elapsed();
    // The 1 s timeout plus a wide margin, below our own 30 s read timeout (which would also
    // read as 0 bytes).
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert_still_serving(&app, &cert);
}

#[test]
fn plain_http_on_the_tls_port_is_refused_and_the_server_keeps_serving() {
    let (_dir, cert, app) = app_with_customer("plain", &[]);
    let mut tcp = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /customer/1 HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("Tom"));
    assert_still_serving(&app, &cert);
}

#[test]
fn a_full_queue_is_answered_503_and_service_resumes() {
    let (_dir, cert, app) =
        app_with_customer("busy", &["--workers", "1", "--request-timeout", "3"]);
    // Requests that started but never finish: the only worker waits on the first one (up to
    // the request timeout), the next four fill its queue (1 worker => 4 waiting places).
    let started: Vec<_> = (0..5)
        .map(|_| {
            let mut s = raw_tls(&app, &cert);
            s.write_all(b"GET /customer/1 HTTP/1.1\r\nHost: lo")
                .unwrap();
            s.flush().unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let text = raw_exchange(&app, &cert, b"GET /customer/1 HTTP/1.1\r\n\r\n");
    let (status, body) = parse_response(&text);
    assert_eq!(status, 503);
    assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    assert_json_error(&body);
    drop(started);
    // Once the unfinished requests time out, service is back.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = get(&agent(&cert), &app.url("/customer/1"));
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Overload is summarized, not logged once per connection.
    let overloaded = app.stderr().matches("overloaded").count();
    assert!(overloaded <= 2, "{}", app.stderr());
}

#[test]
fn idle_and_silent_connections_do_not_hold_the_workers() {
    let (_dir, cert, app) = app_with_customer(
        "idle",
        &[
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--idle-timeout",
            "30",
        ],
    );
    // Sockets that never send a byte, and TLS sessions that never send a request.
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", app.port)).unwrap())
        .collect();
    let handshaken: Vec<_> = (0..50).map(|_| raw_tls(&app, &cert)).collect();
    // A kept-alive connection that made one request and went quiet.
    let mut kept = raw_tls(&app, &cert);
    kept.write_all(b"GET /customer/1 HTTP/1.1\r\n\r\n").unwrap();
    kept.flush().unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    for _ in 0..20 {
        let started = Instant::now();
        assert_still_serving(&app, &cert);
        // A worker held by a silent socket would cost the 10 s request timeout; half of it is
        // a generous bound for a GET on a loaded machine. Latency is measured by bench/.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a GET took {:?} with idle sockets open",
            started.elapsed()
        );
    }
    drop((silent, handshaken, kept));
}
