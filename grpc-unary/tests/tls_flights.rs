//! How the client's TLS flights reach the wire, against a rustls server driven record by
//! record over a real socket: the TLS 1.3 middlebox-compatibility ChangeCipherSpec waits
//! for the client's last flight even when the server's flight arrives in pieces, and a
//! TLS 1.2 server, which waits for the client's flight before it finishes, still gets it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{PATH, client_tls, localhost, pki};
use grpc_unary::{Channel, ClientConfig};
use rustls::ServerConnection;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const CHANGE_CIPHER_SPEC: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn server_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let pki = pki();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server_der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    (Arc::new(config), client_tls(&pki))
}

/// Accepts one connection and reads the ClientHello; returns the server's first flight,
/// not yet sent.
fn accept_hello(
    listener: &TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> (ServerConnection, TcpStream, Vec<u8>) {
    let (mut tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = ServerConnection::new(config).unwrap();
    while !conn.wants_write() {
        conn.read_tls(&mut tcp).unwrap();
        conn.process_new_packets().unwrap();
    }
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    (conn, tcp, flight)
}

/// Feeds what the client sends to `conn` until the handshake is done and the HTTP/2 preface
/// has arrived; returns the socket reads, as they came.
fn read_until_preface(conn: &mut ServerConnection, tcp: &mut TcpStream) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut plain = Vec::new();
    while plain.len() < CLIENT_PREFACE.len() {
        let mut buf = [0u8; 32 * 1024];
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "the client hung up during the handshake");
        chunks.push(buf[..n].to_vec());
        conn.read_tls(&mut &buf[..n]).unwrap();
        conn.process_new_packets().unwrap();
        while conn.wants_write() {
            conn.write_tls(tcp).unwrap();
        }
        let _ = conn.reader().read_to_end(&mut plain);
    }
    assert_eq!(&plain[..CLIENT_PREFACE.len()], CLIENT_PREFACE);
    chunks
}

#[test]
fn the_compatibility_change_cipher_spec_waits_for_the_last_flight_when_the_servers_flight_is_split()
{
    let (config, client) = server_config(&[&rustls::version::TLS13]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = std::thread::spawn(move || {
        let mut channel =
            Channel::connect(&addr, localhost(), client, &ClientConfig::default()).unwrap();
        // The server hangs up after the preface: the call fails, the handshake did not.
        let _ = channel.unary(PATH, b"");
    });

    let (mut conn, mut tcp, flight) = accept_hello(&listener, config);
    // ServerHello alone, as a network may deliver it: the client learns TLS 1.3 from it and
    // queues its compatibility ChangeCipherSpec.
    let first = 5 + usize::from(u16::from_be_bytes([flight[3], flight[4]]));
    tcp.write_all(&flight[..first]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match tcp.read(&mut [0u8; 64]) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => {
            panic!("the client sent something before the server's flight was complete: {other:?}")
        }
    }
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&flight[first..]).unwrap();

    let chunks = read_until_preface(&mut conn, &mut tcp);
    assert!(
        chunks[0].starts_with(&CHANGE_CIPHER_SPEC) && chunks[0].len() > CHANGE_CIPHER_SPEC.len(),
        "the ChangeCipherSpec leaves with the last flight; first read after the flight: {} bytes",
        chunks[0].len()
    );
    drop(tcp);
    client.join().unwrap();
}

#[test]
fn a_tls12_server_gets_the_clients_flight_before_it_finishes() {
    let (config, client) = server_config(&[&rustls::version::TLS12]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // A client that held its flight back would wait for the server's Finished until this
    // budget ran out.
    let cfg = ClientConfig::builder()
        .handshake_timeout(Duration::from_secs(3))
        .build();
    let client = std::thread::spawn(move || {
        let mut channel =
            Channel::connect(&addr, localhost(), client, &cfg).expect("TLS 1.2 handshake");
        let _ = channel.unary(PATH, b"");
    });

    let (mut conn, mut tcp, flight) = accept_hello(&listener, config);
    tcp.write_all(&flight).unwrap();
    read_until_preface(&mut conn, &mut tcp);
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    drop(tcp);
    client.join().unwrap();
}
