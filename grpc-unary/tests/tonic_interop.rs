//! Interoperability with tonic (hyper + h2), an independent gRPC server implementation:
//! mutual TLS on loopback, several calls over one connection, flow control in both
//! directions, statuses, deadlines, size limits and server shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::tonic_server::{TonicServer, string_message};
use common::{PATH, Pki, client_tls, localhost, pki};
use grpc_unary::{Channel, ClientConfig, Code, Error, Phase};
use grsecret::client as proto;

fn connect(pki: &Pki, server: &TonicServer, cfg: &ClientConfig) -> Channel {
    Channel::connect(&server.addr.to_string(), localhost(), client_tls(pki), cfg).unwrap()
}

fn get(channel: &mut Channel, name: &str) -> Result<String, Error> {
    let reply = channel.unary(PATH, &proto::encode_string_field1(name))?;
    let text =
        proto::decode_string_field1(&reply).map_err(|e| Error::Decode { detail: e.detail })?;
    Ok(text.as_str().to_owned())
}

#[test]
fn several_calls_share_one_mutually_authenticated_connection() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());

    assert_eq!(
        channel.peer_certificates().unwrap()[0].as_ref(),
        pki.server_der.as_ref()
    );
    let first = get(&mut channel, "peer").unwrap();
    assert!(
        first.ends_with("certs=1"),
        "server saw the client certificate: {first}"
    );
    assert_eq!(
        get(&mut channel, "image_key").unwrap(),
        "\"MDEyMzQ1Njc4OWFiY2RlZg==\""
    );
    assert_eq!(
        get(&mut channel, "flask.key").unwrap(),
        "secret of flask.key"
    );
    assert_eq!(
        get(&mut channel, "peer").unwrap(),
        first,
        "same client port: one connection"
    );
    channel.close().unwrap();
}

#[test]
fn a_batch_of_calls_is_answered_in_request_order_with_per_call_statuses() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    let names = ["image_key", "missing", "flask.key", "big", "flask.crt"];
    let requests: Vec<Vec<u8>> = names
        .iter()
        .map(|n| proto::encode_string_field1(n))
        .collect();
    let batch: Vec<(&str, &[u8])> = requests.iter().map(|r| (PATH, r.as_slice())).collect();
    let results = channel.unary_many(&batch).unwrap();
    let text = |i: usize| {
        let reply = results[i].as_ref().unwrap();
        proto::decode_string_field1(reply)
            .unwrap()
            .as_str()
            .to_owned()
    };
    assert_eq!(text(0), "\"MDEyMzQ1Njc4OWFiY2RlZg==\"");
    assert!(
        matches!(
            &results[1],
            Err(Error::Status {
                code: Code::NotFound,
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert_eq!(text(2), "secret of flask.key");
    assert_eq!(
        text(3).len(),
        200 * 1024,
        "a 200 KiB reply shares the windows"
    );
    assert_eq!(text(4), "secret of flask.crt");
    // The channel goes on with single calls and further batches.
    assert_eq!(get(&mut channel, "x").unwrap(), "secret of x");
    let again = channel.unary_many(&batch[..1]).unwrap();
    assert!(again[0].is_ok());
    channel.close().unwrap();
}

#[test]
fn a_200_kib_reply_is_received_through_flow_control() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    let reply = get(&mut channel, "big").unwrap();
    assert_eq!(reply.len(), 200 * 1024);
    assert!(reply.bytes().all(|b| b == b'b'));
    // And the connection window keeps working for the next calls.
    assert_eq!(get(&mut channel, "big").unwrap().len(), 200 * 1024);
    assert_eq!(get(&mut channel, "x").unwrap(), "secret of x");
}

#[test]
fn a_1_mib_request_is_sent_through_flow_control() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    let name = "n".repeat(1024 * 1024);
    assert_eq!(get(&mut channel, &name).unwrap(), (1024 * 1024).to_string());
    assert_eq!(get(&mut channel, "image_key").unwrap().len(), 26);
}

#[test]
fn error_statuses_arrive_with_their_decoded_messages() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    match get(&mut channel, "missing").unwrap_err() {
        Error::Status { code, message } => {
            assert_eq!(code, Code::NotFound);
            assert_eq!(message, "no such secret");
        }
        other => panic!("{other}"),
    }
    match get(&mut channel, "unauth").unwrap_err() {
        Error::Status { code, message } => {
            assert_eq!(code, Code::Unauthenticated);
            assert_eq!(
                message,
                "client not attested: mr_enclave \u{2260} expected \u{2713}"
            );
        }
        other => panic!("{other}"),
    }
    // A call-level failure leaves the channel usable.
    assert_eq!(get(&mut channel, "ok").unwrap(), "secret of ok");
}

#[test]
fn an_unknown_method_is_unimplemented() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    let err = channel.unary("/ratls.GrSecret/Nope", &[]).unwrap_err();
    assert_eq!(err.code(), Some(Code::Unimplemented), "{err}");
}

#[test]
fn a_slow_handler_hits_the_deadline_and_the_channel_survives() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let cfg = ClientConfig::builder()
        .call_timeout(Duration::from_millis(300))
        .build();
    let mut channel = connect(&pki, &server, &cfg);
    let started = Instant::now();
    let err = get(&mut channel, "slow").unwrap_err();
    let elapsed = started.elapsed();
    // Either our own deadline fires, or tonic enforces the grpc-timeout we sent first.
    match &err {
        Error::Timeout {
            phase: Phase::Call { path },
            ..
        } => assert_eq!(path, PATH),
        Error::Status { code, .. } => {
            assert!(
                matches!(code, Code::DeadlineExceeded | Code::Cancelled),
                "{err}"
            )
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.code().map(|c| c == Code::Ok), Some(false));
    // The 300 ms deadline plus a wide margin, well below the handler's 10 s.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(get(&mut channel, "after").unwrap(), "secret of after");
}

#[test]
fn a_reply_above_the_size_limit_is_refused() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    match get(&mut channel, "huge").unwrap_err() {
        Error::MessageTooLarge { size, limit } => {
            assert!(size > 5 * 1024 * 1024);
            assert_eq!(limit, grpc_unary::DEFAULT_MAX_MESSAGE_SIZE as u64);
        }
        other => panic!("{other}"),
    }
    assert_eq!(get(&mut channel, "small").unwrap(), "secret of small");

    let tight = ClientConfig::builder().max_message_size(1000).build();
    let mut channel = connect(&pki, &server, &tight);
    assert!(matches!(
        get(&mut channel, "big"),
        Err(Error::MessageTooLarge { limit: 1000, .. })
    ));
}

#[test]
fn a_server_that_dies_mid_call_fails_the_call() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    assert_eq!(get(&mut channel, "a").unwrap(), "secret of a");
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        // Dropping the runtime aborts every task: sockets close without GOAWAY.
        server.runtime.shutdown_background();
    });
    let started = Instant::now();
    let err = get(&mut channel, "hang").unwrap_err();
    killer.join().unwrap();
    assert!(
        matches!(err, Error::ConnectionClosed { .. } | Error::Io { .. }),
        "{err}"
    );
    // The kill at 200 ms plus a wide margin, well below the handler's 30 s.
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(
        get(&mut channel, "b"),
        Err(Error::Unusable { .. })
    ));
}

#[test]
fn a_gracefully_stopping_server_refuses_new_calls() {
    let pki = pki();
    let mut server = TonicServer::start(&pki);
    let mut channel = connect(&pki, &server, &ClientConfig::default());
    assert_eq!(get(&mut channel, "a").unwrap(), "secret of a");
    server.shutdown();
    std::thread::sleep(Duration::from_millis(300));
    let err = get(&mut channel, "b").unwrap_err();
    assert!(
        matches!(
            err,
            Error::GoAway { .. } | Error::ConnectionClosed { .. } | Error::Io { .. }
        ),
        "{err}"
    );
    assert!(get(&mut channel, "c").is_err());
}

#[test]
fn the_hand_written_protobuf_matches_the_helper() {
    // The server side decodes and encodes protobuf independently of `proto`.
    assert_eq!(
        string_message("image_key"),
        proto::encode_string_field1("image_key")
    );
    let long = "z".repeat(300);
    assert_eq!(string_message(&long), proto::encode_string_field1(&long));
}
