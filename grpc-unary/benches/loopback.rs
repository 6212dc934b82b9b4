//! Loopback benchmark against a local tonic server over mutual TLS: connect + handshake,
//! then three GetSecret-shaped calls per connection, one after another and as one batch
//! (init's pattern), and a long run of calls on one connection. Prints medians;
//! `cargo bench -p grpc-unary`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::tonic_server::TonicServer;
use common::{PATH, client_tls, localhost, pki};
use grpc_unary::{Channel, ClientConfig};
use grsecret::client as proto;

const CONNECTIONS: usize = 200;
const LONG_RUN_CALLS: usize = 5_000;

fn main() {
    let pki = pki();
    let server = TonicServer::start(&pki);
    let addr = server.addr.to_string();
    let tls = client_tls(&pki);
    let cfg = ClientConfig::default();
    let names = ["image_key", "flask.crt", "flask.key"];
    let requests: Vec<Vec<u8>> = names
        .iter()
        .map(|n| proto::encode_string_field1(n))
        .collect();

    let mut connect = Vec::new();
    let mut calls = Vec::new();
    let mut total = Vec::new();
    for i in 0..CONNECTIONS + 10 {
        let t0 = Instant::now();
        let mut channel = Channel::connect(&addr, localhost(), tls.clone(), &cfg).unwrap();
        let t1 = Instant::now();
        for request in &requests {
            let t = Instant::now();
            let reply = channel.unary(PATH, request).unwrap();
            let elapsed = t.elapsed();
            assert!(!proto::decode_string_field1(&reply).unwrap().is_empty());
            if i >= 10 {
                calls.push(elapsed);
            }
        }
        let t2 = Instant::now();
        channel.close().unwrap();
        if i >= 10 {
            connect.push(t1 - t0);
            total.push(t2 - t0);
        }
    }

    let batch: Vec<(&str, &[u8])> = requests.iter().map(|r| (PATH, r.as_slice())).collect();
    let mut batched = Vec::new();
    for i in 0..CONNECTIONS + 10 {
        let t0 = Instant::now();
        let mut channel = Channel::connect(&addr, localhost(), tls.clone(), &cfg).unwrap();
        for reply in channel.unary_many(&batch).unwrap() {
            assert!(
                !proto::decode_string_field1(&reply.unwrap())
                    .unwrap()
                    .is_empty()
            );
        }
        let elapsed = t0.elapsed();
        channel.close().unwrap();
        if i >= 10 {
            batched.push(elapsed);
        }
    }

    let mut channel = Channel::connect(&addr, localhost(), tls, &cfg).unwrap();
    let mut long_run = Vec::with_capacity(LONG_RUN_CALLS);
    for i in 0..LONG_RUN_CALLS {
        let t = Instant::now();
        channel.unary(PATH, &requests[i % 3]).unwrap();
        long_run.push(t.elapsed());
    }

    println!("grpc-unary loopback vs tonic (mTLS, TLS 1.3, ECDSA P-256)");
    report("connect + TLS handshake", &mut connect);
    report("unary call (3 per connection)", &mut calls);
    report("connect + 3 calls", &mut total);
    report("connect + 3 calls as one batch", &mut batched);
    report("unary call (long run, 1 conn)", &mut long_run);
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let pct = |p: usize| samples[(samples.len() - 1) * p / 100];
    println!(
        "{label:32} n={:5}  median {:>9.1?}  p90 {:>9.1?}  min {:>9.1?}",
        samples.len(),
        pct(50),
        pct(90),
        samples[0]
    );
}
