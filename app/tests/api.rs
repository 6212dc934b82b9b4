//! The REST API through the real binary over HTTPS: the seed's curl commands byte for byte,
//! JSON bodies, errors, TLS versions, persistence across restarts, and the access log.

mod common;

use common::{App, TestCert, agent, curl, get, put_form, temp_dir};

#[test]
fn the_seed_curl_commands_give_the_flask_bodies() {
    let dir = temp_dir("app-seed");
    let cert = TestCert::new(&dir, "flask");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let url = |id: &str| format!("https://localhost:{}/customer/{id}", app.port);
    // The four commands of the seed's README, with the port the test was given.
    assert_eq!(
        curl(&cert, &["-X", "PUT", &url("1"), "-d", "data=Tom"]),
        "{\"1\": \"Tom\"}\n"
    );
    assert_eq!(
        curl(&cert, &["-X", "PUT", &url("2"), "-d", "data=Jerry"]),
        "{\"2\": \"Jerry\"}\n"
    );
    assert_eq!(curl(&cert, &["-X", "GET", &url("1")]), "{\"1\": \"Tom\"}\n");
    assert_eq!(
        curl(&cert, &["-X", "GET", &url("2")]),
        "{\"2\": \"Jerry\"}\n"
    );
}

#[test]
fn responses_are_json_with_length_and_date() {
    let dir = temp_dir("app-headers");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let url = format!("https://localhost:{}/customer/7", app.port);
    curl(&cert, &["-X", "PUT", &url, "-d", "data=x"]);
    let head = curl(&cert, &["-i", &url]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nContent-Length: 11\r\n"), "{head}");
    assert!(head.contains("\r\nDate: "), "{head}");
    assert!(head.ends_with("\r\n\r\n{\"7\": \"x\"}\n"), "{head}");
}

#[test]
fn a_json_put_stores_and_echoes_like_a_form_put() {
    let dir = temp_dir("app-json");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let agent = agent(&cert);
    let (status, body) = common::status_body(
        agent
            .put(&app.url("/customer/j%C3%BCrgen"))
            .header("Content-Type", "application/json")
            .send(r#"{"data": "caf\u00e9 \"quoted\""}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(body, "{\"j\\u00fcrgen\": \"caf\\u00e9 \\\"quoted\\\"\"}\n");
    assert_eq!(get(&agent, &app.url("/customer/j%C3%BCrgen")), (200, body));
}

#[test]
fn form_values_are_plus_and_percent_decoded() {
    let dir = temp_dir("app-form");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let agent = agent(&cert);
    let (status, body) = put_form(&agent, &app.url("/customer/3"), "data=Tom+%26+Jerry%21");
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"3\": \"Tom & Jerry!\"}\n")
    );
}

#[test]
fn an_unknown_customer_is_a_json_404() {
    let dir = temp_dir("app-404");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let agent = agent(&cert);
    assert_eq!(
        get(&agent, &app.url("/customer/nobody")),
        (404, "{\"error\": \"customer not found\"}\n".to_owned())
    );
    assert_eq!(
        get(&agent, &app.url("/customers")),
        (404, "{\"error\": \"not found\"}\n".to_owned())
    );
}

#[test]
fn a_wrong_method_is_405_with_allow() {
    let dir = temp_dir("app-405");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let mut response = agent(&cert).delete(&app.url("/customer/1")).call().unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response.headers().get("allow").unwrap().to_str().unwrap(),
        "GET, HEAD, PUT"
    );
    assert_eq!(
        response.body_mut().read_to_string().unwrap(),
        "{\"error\": \"method not allowed\"}\n"
    );
}

#[test]
fn tls_1_2_and_tls_1_3_are_both_served() {
    let dir = temp_dir("app-tlsver");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let url = format!("https://localhost:{}/customer/v", app.port);
    curl(&cert, &["-X", "PUT", &url, "-d", "data=v"]);
    for flags in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        let out = curl(
            &cert,
            &[
                flags[0],
                flags[1],
                flags[2],
                "-w",
                "%{ssl_verify_result}",
                &url,
            ],
        );
        assert_eq!(out, "{\"v\": \"v\"}\n0", "{flags:?}");
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let dir = temp_dir("app-expect");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let value = "x".repeat(60_000);
    let url = format!("https://localhost:{}/customer/big", app.port);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20", "--cacert"])
        .arg(&cert.cert_path)
        .args(["-X", "PUT", &url, "-H", "Expect: 100-continue"])
        .args(["-d", &format!("data={value}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{{\"big\": \"{value}\"}}\n")
    );
    // Without the interim response curl would wait a second, then send the body anyway.
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(trace.contains("< HTTP/1.1 100 Continue"), "{trace}");
}

#[test]
fn customers_survive_a_restart() {
    let dir = temp_dir("app-restart");
    let cert = TestCert::new(&dir, "c");
    let data = dir.path().join("data");
    let app = App::start(&cert, &data, &[]);
    let agent = agent(&cert);
    assert_eq!(put_form(&agent, &app.url("/customer/1"), "data=Tom").0, 200);
    assert_eq!(
        put_form(&agent, &app.url("/customer/2"), "data=Jerry").0,
        200
    );
    assert_eq!(
        put_form(&agent, &app.url("/customer/1"), "data=Tom2").0,
        200
    );
    // SIGKILL: whatever was acknowledged must already be on disk.
    app.kill();
    let app = App::start(&cert, &data, &[]);
    let agent = common::agent(&cert);
    assert_eq!(
        get(&agent, &app.url("/customer/1")),
        (200, "{\"1\": \"Tom2\"}\n".into())
    );
    assert_eq!(
        get(&agent, &app.url("/customer/2")),
        (200, "{\"2\": \"Jerry\"}\n".into())
    );
    assert!(data.join("customers.sqlite3").is_file());
}

#[test]
fn the_log_has_one_line_per_request_and_never_the_body() {
    let dir = temp_dir("app-log");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let agent = agent(&cert);
    let secret = "s3cr3t-customer-value";
    put_form(&agent, &app.url("/customer/42"), &format!("data={secret}"));
    put_form(&agent, &app.url("/customer/43"), &format!("name={secret}"));
    get(&agent, &app.url("/customer/42"));
    let log = wait_for_log(&app, 3);
    assert!(!log.contains(secret), "{log}");
    assert!(log.contains(" PUT /customer/42 200 "), "{log}");
    assert!(log.contains(" GET /customer/42 200 "), "{log}");
    assert_eq!(log.matches(" /customer/").count(), 3, "{log}");
}

#[test]
fn quiet_turns_the_request_log_off() {
    let dir = temp_dir("app-quiet");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &["--quiet"]);
    get(&agent(&cert), &app.url("/customer/1"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!app.stderr().contains("/customer/1"));
}

#[test]
fn head_answers_the_get_headers_without_a_body() {
    let dir = temp_dir("app-head");
    let cert = TestCert::new(&dir, "c");
    let app = App::start(&cert, &dir.path().join("data"), &[]);
    let url = format!("https://localhost:{}/customer/h", app.port);
    curl(&cert, &["-X", "PUT", &url, "-d", "data=abc"]);
    let head = curl(&cert, &["-I", &url]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 13\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
}

/// The app's stderr once it holds `lines` request lines (the pipe is read asynchronously).
fn wait_for_log(app: &App, lines: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = app.stderr();
        if log.matches(" /customer/").count() >= lines || std::time::Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
