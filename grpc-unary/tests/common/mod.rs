//! Test PKI and TLS configurations shared by the integration tests and the benchmark:
//! a throwaway CA issuing a `localhost` server certificate and a client certificate (mTLS),
//! plus a tonic gRPC server for `/ratls.GrSecret/GetSecret` over raw protobuf bytes.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

pub const PATH: &str = "/ratls.GrSecret/GetSecret";

pub struct Pki {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub server_pem: String,
    pub server_key_pem: String,
    pub server_der: CertificateDer<'static>,
    pub server_key_der: Vec<u8>,
    pub client_der: CertificateDer<'static>,
    pub client_key_der: Vec<u8>,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    // Distinct subject names: OpenSSL/BoringSSL take issuer == subject for self-signed.
    let params = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let mut ca_params = params(Vec::new(), "grpc-unary test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server = params(
        vec!["localhost".to_string(), "127.0.0.1".to_string()],
        "test server",
    )
    .signed_by(&server_key, &issuer)
    .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = params(vec!["init.client".to_string()], "test client")
        .signed_by(&client_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        server_der: server.der().clone(),
        server_key_der: server_key.serialize_der(),
        client_der: client.der().clone(),
        client_key_der: client_key.serialize_der(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client config trusting the test CA and presenting the client certificate; no ALPN set
/// (the channel must add `h2` itself).
pub fn client_tls(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.client_key_der.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![pki.client_der.clone()], key)
        .unwrap();
    Arc::new(config)
}

/// Server config for the raw HTTP/2 server; requires the client certificate.
pub fn server_tls(pki: &Pki, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server_der.clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// The tonic test server: a `ratls.GrSecret` service whose behaviour depends on the
/// requested name (see `reply_for`).
pub mod tonic_server {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::{Buf, BufMut};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    use tonic::{Request, Response, Status};

    use super::{PATH, Pki};

    /// Raw protobuf bytes in and out.
    #[derive(Clone, Copy, Default)]
    pub struct RawCodec;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawCodec;
        type Decoder = RawCodec;
        fn encoder(&mut self) -> RawCodec {
            RawCodec
        }
        fn decoder(&mut self) -> RawCodec {
            RawCodec
        }
    }

    impl Encoder for RawCodec {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawCodec {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }

    #[derive(Clone)]
    pub struct GrSecret;

    impl tonic::server::NamedService for GrSecret {
        const NAME: &'static str = "ratls.GrSecret";
    }

    struct GetSecret;

    impl tonic::server::UnaryService<Vec<u8>> for GetSecret {
        type Response = Vec<u8>;
        type Future = BoxFuture<Response<Vec<u8>>, Status>;
        fn call(&mut self, request: Request<Vec<u8>>) -> Self::Future {
            Box::pin(reply_for(request))
        }
    }

    /// Field 1 of the request, decoded by hand (independently of the crate under test).
    fn name_of(message: &[u8]) -> String {
        if message.is_empty() {
            return String::new();
        }
        assert_eq!(message[0], 0x0a, "field 1, length-delimited");
        let (mut len, mut shift, mut i) = (0usize, 0, 1);
        loop {
            let b = message[i];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        String::from_utf8(message[i..i + len].to_vec()).unwrap()
    }

    /// Encodes `message { string field = 1; }` by hand.
    pub fn string_message(s: &str) -> Vec<u8> {
        let mut out = vec![0x0a];
        let mut len = s.len();
        while len >= 0x80 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(s.as_bytes());
        out
    }

    async fn reply_for(request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let client_certs = request.peer_certs().map(|c| c.len()).unwrap_or(0);
        let name = name_of(request.get_ref());
        let reply = match name.as_str() {
            "image_key" => string_message("\"MDEyMzQ1Njc4OWFiY2RlZg==\""),
            "peer" => string_message(&format!("{peer} certs={client_certs}")),
            "big" => string_message(&"b".repeat(200 * 1024)),
            "huge" => string_message(&"h".repeat(5 * 1024 * 1024)),
            "missing" => return Err(Status::not_found("no such secret")),
            "unauth" => {
                return Err(Status::unauthenticated(
                    "client not attested: mr_enclave \u{2260} expected \u{2713}",
                ));
            }
            "slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                string_message("late")
            }
            "hang" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                string_message("never")
            }
            other if other.len() > 1000 => string_message(&other.len().to_string()),
            other => string_message(&format!("secret of {other}")),
        };
        Ok(Response::new(reply))
    }

    impl<B> Service<http::Request<B>> for GrSecret
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            if req.uri().path() == PATH {
                Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(RawCodec);
                    Ok(grpc.unary(GetSecret, req).await)
                })
            } else {
                Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) })
            }
        }
    }

    /// A running tonic server on loopback, with its own runtime.
    pub struct TonicServer {
        pub addr: SocketAddr,
        pub runtime: tokio::runtime::Runtime,
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl TonicServer {
        pub fn start(pki: &Pki) -> TonicServer {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(&pki.server_pem, &pki.server_key_pem))
                .client_ca_root(Certificate::from_pem(&pki.ca_pem));
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let router = Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(GrSecret);
            // As grpc-core servers do: without it, Nagle holds the server's small writes
            // until the client's delayed ACK (40 ms on Linux).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            runtime.spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
            TonicServer {
                addr,
                runtime,
                shutdown: Some(tx),
            }
        }

        /// Graceful shutdown: GOAWAY to open connections, then close them.
        pub fn shutdown(&mut self) {
            if let Some(tx) = self.shutdown.take() {
                let _ = tx.send(());
            }
        }
    }
}
