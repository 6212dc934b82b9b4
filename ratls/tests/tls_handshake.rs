//! Mutual RA-TLS handshakes over loopback between rustls peers whose certificates carry quotes
//! from a simulated platform: the verifiers run the whole pipeline inside the handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use ratls::cert::RaTlsIdentity;
use ratls::collateral::StaticCollateral;
use ratls::policy::{PolicyField, RaPolicy};
use ratls::tls::{RaTlsServerVerifier, attestation_error, client_config, server_config};
use ratls::verify::{TrustAnchor, Verifier, VerifyError};
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

struct Side {
    identity: RaTlsIdentity,
    mr_enclave: String,
    mr_signer: String,
}

struct World {
    _dir: tempfile::TempDir,
    platform: SimPlatform,
    server: Side,
    client: Side,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let platform =
        SimPlatform::create(&dir.path().join("platform"), &PlatformOptions::new(now())).unwrap();
    let side = |seed| {
        let id = Identity::random(Some(seed)).unwrap();
        let source = SimQuoteSource::new(SimPlatform::open(platform.dir()).unwrap(), id.clone());
        Side {
            identity: RaTlsIdentity::mint(&source).unwrap(),
            mr_enclave: hex::encode(id.mr_enclave),
            mr_signer: hex::encode(id.mr_signer),
        }
    };
    let server = side(1);
    let client = side(2);
    World {
        _dir: dir,
        platform,
        server,
        client,
    }
}

fn policy_for(side: &Side) -> RaPolicy {
    let json = format!(
        r#"{{"verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{{"name": "peer", "mr_enclave": "{}", "mr_signer": "{}", "isv_prod_id": 0,
                         "isv_svn": 0, "config_svn": 0, "debuggable": false}}]}}"#,
        side.mr_enclave, side.mr_signer
    );
    RaPolicy::from_json(json.as_bytes(), "test").unwrap()
}

fn verifier(w: &World, anchor: TrustAnchor, policy: RaPolicy) -> Arc<Verifier> {
    Arc::new(Verifier::new(
        anchor,
        Arc::new(StaticCollateral::new(w.platform.collateral(), "sim")),
        policy,
    ))
}

fn sim_anchor(w: &World) -> TrustAnchor {
    ratls::danger::simulated_root(w.platform.root_ca_der().to_vec(), "test platform".into())
}

/// Runs one handshake plus a one-byte exchange; returns the client's and server's results.
fn handshake(
    client: rustls::ClientConfig,
    server: rustls::ServerConfig,
) -> (Result<Vec<u8>, rustls::Error>, Result<Vec<u8>, String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).map_err(|e| e.to_string())?;
        tls.write_all(&byte).map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        let peer = tls
            .conn
            .peer_certificates()
            .map(|c| c[0].to_vec())
            .ok_or("no client cert")?;
        Ok(peer)
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let name = rustls_pki_types::ServerName::try_from("kms.invalid").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let result = tls
        .write_all(&[7])
        .and_then(|()| tls.flush())
        .and_then(|()| {
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte)
        });
    let client_result = match result {
        Ok(()) => Ok(tls.conn.peer_certificates().unwrap()[0].to_vec()),
        Err(e) => Err(e
            .into_inner()
            .and_then(|e| e.downcast::<rustls::Error>().ok())
            .map_or(
                rustls::Error::General("io error without a TLS cause".into()),
                |e| *e,
            )),
    };
    drop(tls);
    (client_result, server_thread.join().unwrap())
}

#[test]
fn both_sides_attest_each_other_and_can_read_the_verified_peer() {
    let w = world();
    let client_verifier = verifier(&w, sim_anchor(&w), policy_for(&w.server));
    let server_verifier = verifier(&w, sim_anchor(&w), policy_for(&w.client));
    let client = client_config(Arc::clone(&client_verifier), &w.client.identity).unwrap();
    let server = server_config(Arc::clone(&server_verifier), &w.server.identity).unwrap();
    let (c, s) = handshake(client, server);
    let server_cert = c.unwrap();
    let client_cert = s.unwrap();
    let t = now();
    let seen_by_client = RaTlsServerVerifier::new(Arc::clone(&client_verifier))
        .peer(&server_cert, t)
        .unwrap();
    assert_eq!(
        hex::encode(seen_by_client.report_body().mr_enclave),
        w.server.mr_enclave
    );
    assert!(!seen_by_client.anchored_at_intel());
    let seen_by_server = server_verifier.cached(&client_cert, t).unwrap();
    assert_eq!(
        hex::encode(seen_by_server.report_body().mr_enclave),
        w.client.mr_enclave
    );
    assert_eq!(seen_by_server.matched().name.as_deref(), Some("peer"));
}

#[test]
fn tls_1_2_peers_attest_too() {
    let w = world();
    let mut server = server_config(
        verifier(&w, sim_anchor(&w), policy_for(&w.client)),
        &w.server.identity,
    )
    .unwrap();
    // A TLS 1.2-only client (as Occlum's C++ peers may negotiate) against our default server.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cc, ck) = w.client.identity.rustls_pair();
    let client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RaTlsServerVerifier::new(verifier(
            &w,
            sim_anchor(&w),
            policy_for(&w.server),
        ))))
        .with_client_auth_cert(vec![cc], ck)
        .unwrap();
    server.alpn_protocols.clear();
    let (c, s) = handshake(client, server);
    c.unwrap();
    s.unwrap();
}

#[test]
fn a_server_outside_the_clients_policy_fails_the_handshake_naming_the_field() {
    let w = world();
    // The client expects the client's own identity from the server: mr_enclave differs.
    let client = client_config(
        verifier(&w, sim_anchor(&w), policy_for(&w.client)),
        &w.client.identity,
    )
    .unwrap();
    let server = server_config(
        verifier(&w, sim_anchor(&w), policy_for(&w.client)),
        &w.server.identity,
    )
    .unwrap();
    let (c, _) = handshake(client, server);
    let err = c.expect_err("handshake must fail");
    let cause = attestation_error(&err).expect("the cause is an attestation failure");
    assert_eq!(cause.check(), "measurement-policy");
    assert!(
        matches!(cause, VerifyError::Policy(r)
            if r.mismatches().first().map(|m| m.field()) == Some(PolicyField::MrEnclave)),
        "{cause:?}"
    );
}

#[test]
fn simulated_evidence_is_rejected_under_the_production_default_anchor() {
    let w = world();
    let client = client_config(
        verifier(&w, TrustAnchor::default(), policy_for(&w.server)),
        &w.client.identity,
    )
    .unwrap();
    let server = server_config(
        verifier(&w, sim_anchor(&w), policy_for(&w.client)),
        &w.server.identity,
    )
    .unwrap();
    let (c, _) = handshake(client, server);
    let err = c.expect_err("handshake must fail");
    let cause = attestation_error(&err).expect("attestation failure");
    assert_eq!(cause.check(), "dcap-signature", "{cause}");
    // dcap-qvl refuses the simulated chain; the error names the anchor it was checked under.
    assert!(
        matches!(cause, VerifyError::Dcap { anchor, .. }
            if *anchor == TrustAnchor::default().describe()),
        "{cause:?}"
    );
}

#[test]
fn a_client_without_a_certificate_is_refused_by_the_server() {
    let w = world();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(RaTlsServerVerifier::new(verifier(
        &w,
        sim_anchor(&w),
        policy_for(&w.server),
    ))))
    .with_no_client_auth();
    let server = server_config(
        verifier(&w, sim_anchor(&w), policy_for(&w.client)),
        &w.server.identity,
    )
    .unwrap();
    let (_, s) = handshake(client, server);
    assert!(s.is_err());
}

#[test]
fn both_configs_offer_p256_and_aes_128_gcm_sha256_first_and_keep_the_rest() {
    let w = world();
    let v = verifier(&w, sim_anchor(&w), policy_for(&w.server));
    let client = client_config(Arc::clone(&v), &w.client.identity).unwrap();
    let server = server_config(v, &w.server.identity).unwrap();
    for suites in [
        &client.crypto_provider().cipher_suites,
        &server.crypto_provider().cipher_suites,
    ] {
        let names: Vec<_> = suites.iter().map(|s| s.suite()).collect();
        assert_eq!(names[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        for kept in [
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            assert!(names.contains(&kept), "{kept:?} was dropped: {names:?}");
        }
        assert_eq!(
            names.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }
    for groups in [
        &client.crypto_provider().kx_groups,
        &server.crypto_provider().kx_groups,
    ] {
        let names: Vec<_> = groups.iter().map(|g| g.name()).collect();
        assert_eq!(names[0], rustls::NamedGroup::secp256r1, "{names:?}");
        assert!(names.contains(&rustls::NamedGroup::X25519), "{names:?}");
    }
}

#[test]
fn the_server_configuration_never_resumes_a_session() {
    let w = world();
    let server = server_config(
        verifier(&w, sim_anchor(&w), policy_for(&w.client)),
        &w.server.identity,
    )
    .unwrap();
    assert!(!server.session_storage.can_cache(), "no session-ID cache");
    assert!(!server.ticketer.enabled(), "no TLS 1.2 tickets");
    assert_eq!(server.send_tls13_tickets, 0, "no TLS 1.3 tickets");
}

#[test]
fn the_attested_client_config_hands_over_exactly_the_verified_server() {
    let w = world();
    let client_verifier = verifier(&w, sim_anchor(&w), policy_for(&w.server));
    let server_verifier = verifier(&w, sim_anchor(&w), policy_for(&w.client));
    let (client, peers) =
        ratls::tls::attested_client_config(client_verifier, &w.client.identity).unwrap();
    let server = server_config(server_verifier, &w.server.identity).unwrap();
    let (c, s) = handshake(client, server);
    let server_cert = c.unwrap();
    s.unwrap();
    let peer = peers
        .take(&server_cert)
        .expect("the handshake's verified peer");
    assert_eq!(
        hex::encode(peer.report_body().mr_enclave),
        w.server.mr_enclave
    );
    assert!(peers.take(&server_cert).is_none(), "taken once");
    assert!(peers.take(w.client.identity.cert_der()).is_none());
}
