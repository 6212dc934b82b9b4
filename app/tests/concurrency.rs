//! Fifty concurrent HTTPS clients writing and reading for a few seconds: no request fails and
//! every acknowledged write is there afterwards, also after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::{App, TestCert, agent, get, put_form, temp_dir};

const CLIENTS: usize = 50;
const RUN_FOR: Duration = Duration::from_secs(3);

#[test]
fn fifty_concurrent_clients_lose_no_write() {
    let dir = temp_dir("app-concurrency");
    let cert = TestCert::new(&dir, "c");
    let data = dir.path().join("data");
    let app = App::start(&cert, &data, &["--quiet"]);
    let started = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let agent = agent(&cert);
            let url = app.url("");
            std::thread::spawn(move || {
                let mut written = Vec::new();
                let mut i = 0usize;
                while started.elapsed() < RUN_FOR || i < 5 {
                    let id = format!("c{client}-{i}");
                    let value = format!("v{client} {i} é");
                    let form = format!("data=v{client}+{i}+%C3%A9");
                    let (status, body) = put_form(&agent, &format!("{url}/customer/{id}"), &form);
                    assert_eq!(status, 200, "{body}");
                    let expected = format!("{{\"{id}\": \"v{client} {i} \\u00e9\"}}\n");
                    assert_eq!(body, expected);
                    // Everyone also fights over one shared record.
                    let shared = format!("data=from+{client}");
                    assert_eq!(
                        put_form(&agent, &format!("{url}/customer/shared"), &shared).0,
                        200
                    );
                    let (status, again) = get(&agent, &format!("{url}/customer/{id}"));
                    assert_eq!((status, again), (200, expected));
                    written.push((id, value));
                    i += 1;
                }
                written
            })
        })
        .collect();
    let written: Vec<(String, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a client failed"))
        .collect();
    assert!(written.len() >= CLIENTS * 5);
    verify_all(&app, &cert, &written);
    app.kill();
    let app = App::start(&cert, &data, &["--quiet"]);
    verify_all(&app, &cert, &written);
    eprintln!("{} writes by {CLIENTS} clients verified", written.len());
}

fn verify_all(app: &App, cert: &TestCert, written: &[(String, String)]) {
    let agent = agent(cert);
    for (id, value) in written {
        let (status, body) = get(&agent, &app.url(&format!("/customer/{id}")));
        assert_eq!(status, 200, "{id}");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed[id.as_str()], value.as_str());
    }
    let (status, body) = get(&agent, &app.url("/customer/shared"));
    assert_eq!(status, 200);
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let last = parsed["shared"].as_str().unwrap();
    let client: usize = last.strip_prefix("from ").unwrap().parse().unwrap();
    assert!(client < CLIENTS);
}
