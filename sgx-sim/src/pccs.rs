//! A loopback PCCS (Intel's "Provisioning Certificate Caching Service", API v4) serving a
//! simulated platform's collateral, so the real HTTP fetch path is exercised in tests.
//!
//! Routes (as Intel's PCS/PCCS v4 lay them out; dcap-qvl's collateral client fetches the same):
//! - `GET /sgx/certification/v4/pckcrl?ca=processor[&encoding=der]`: the PCK CRL, DER with
//!   `encoding=der`, else PEM; header `SGX-PCK-CRL-Issuer-Chain`.
//! - `GET /sgx/certification/v4/tcb?fmspc=HEX`: `{"tcbInfo":{..},"signature":"hex"}` with the
//!   signed bytes verbatim; header `TCB-Info-Issuer-Chain`. Unknown FMSPC: 404.
//! - `GET /sgx/certification/v4/qe/identity`: `{"enclaveIdentity":{..},"signature":"hex"}`;
//!   header `SGX-Enclave-Identity-Issuer-Chain`.
//! - `GET /sgx/certification/v4/rootcacrl`: the root CA CRL as hex text (what Intel's PCCS
//!   serves there; dcap-qvl hex-decodes it), or DER with `encoding=der`.
//!
//! Issuer chains are PEM, URL-encoded like JavaScript's `encodeURIComponent` (as Intel does).
//! Every response carries `X-SGX-Sim: SIMULATED`. Connections are kept alive (HTTP/1.1) for
//! up to [`MAX_REQUESTS_PER_CONNECTION`] requests and [`KEEP_ALIVE_IDLE`] between them, as a
//! real PCCS (Node.js) keeps them, so a client's GETs share one TCP connection; each response
//! leaves in one write (head and body together), so no GET waits on Nagle's algorithm and
//! the client's delayed ACK. Request heads are capped at [`MAX_REQUEST_HEAD`] bytes, reads and
//! writes time out, and at most [`MAX_CONNECTIONS`] are served at once.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use dcap_qvl::QuoteCollateralV3;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::collateral::{qe_identity_response, tcb_info_response};
use crate::platform::SimPlatform;

/// Largest request head (request line and headers) accepted.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request, or to take the response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more get 503.
pub const MAX_CONNECTIONS: usize = 32;
/// Requests served on one connection before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 100;
/// How long a kept-alive connection may sit idle between requests.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(2);
/// How often the accept loop checks for a stop request (and for a new connection: the listener
/// is non-blocking, so this bounds the delay a PCCS client waits before it is accepted).
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// How long `serve` waits for in-flight connections after a stop request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(6);
/// How long, and how many bytes, to drain from a client after responding.
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_LINGER_DRAIN: u64 = 64 * 1024;
/// Path prefix of PCCS API v4 for SGX.
pub const API_PREFIX: &str = "/sgx/certification/v4/";

/// Everything `encodeURIComponent` escapes: all but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The collateral of one platform, ready to serve.
#[derive(Debug, Clone)]
pub struct Pccs {
    fmspc: [u8; 6],
    pck_crl_der: Vec<u8>,
    pck_crl_chain: String,
    tcb_body: String,
    tcb_chain: String,
    qe_body: String,
    qe_chain: String,
    root_crl_der: Vec<u8>,
}

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Pccs {
    /// Serves `collateral` for the platform with `fmspc`.
    pub fn new(fmspc: [u8; 6], collateral: &QuoteCollateralV3) -> Self {
        let encode = |chain: &str| utf8_percent_encode(chain, URI_COMPONENT).to_string();
        Self {
            fmspc,
            pck_crl_der: collateral.pck_crl.clone(),
            pck_crl_chain: encode(&collateral.pck_crl_issuer_chain),
            tcb_body: tcb_info_response(&collateral.tcb_info, &collateral.tcb_info_signature),
            tcb_chain: encode(&collateral.tcb_info_issuer_chain),
            qe_body: qe_identity_response(
                &collateral.qe_identity,
                &collateral.qe_identity_signature,
            ),
            qe_chain: encode(&collateral.qe_identity_issuer_chain),
            root_crl_der: collateral.root_ca_crl.clone(),
        }
    }

    /// Serves `platform`'s collateral.
    pub fn for_platform(platform: &SimPlatform) -> Self {
        Self::new(platform.fmspc(), &platform.collateral())
    }

    /// The response to `method target` (the request line's first two words).
    pub fn respond(&self, method: &str, target: &str) -> Response {
        if method != "GET" && method != "HEAD" {
            let mut r = error(405, "only GET is served");
            r.headers.push(("Allow", "GET, HEAD".into()));
            return r;
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let Some(route) = path.strip_prefix(API_PREFIX) else {
            return error(404, "not a PCCS v4 SGX path");
        };
        let query = match parse_query(query) {
            Ok(q) => q,
            Err(detail) => return error(400, &detail),
        };
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut response = match route {
            "pckcrl" => self.pck_crl(param("ca"), param("encoding")),
            "tcb" => self.tcb(param("fmspc")),
            "qe/identity" => ok("application/json", self.qe_body.clone().into_bytes())
                .with("SGX-Enclave-Identity-Issuer-Chain", &self.qe_chain),
            "rootcacrl" => match param("encoding") {
                None => ok("text/plain", hex::encode(&self.root_crl_der).into_bytes()),
                Some("der") => ok("application/pkix-crl", self.root_crl_der.clone()),
                Some(other) => error(400, &format!("unknown encoding {other:?}")),
            },
            _ => error(404, "unknown PCCS v4 SGX resource"),
        };
        if method == "HEAD" {
            response.body.clear();
        }
        response
    }

    fn pck_crl(&self, ca: Option<&str>, encoding: Option<&str>) -> Response {
        match ca {
            Some("processor") => {}
            Some("platform") => return error(404, "this simulated platform has no Platform CA"),
            Some(other) => return error(400, &format!("unknown ca {other:?}")),
            None => return error(400, "missing parameter ca"),
        }
        let response = match encoding {
            Some("der") => ok("application/pkix-crl", self.pck_crl_der.clone()),
            None => ok(
                "application/x-pem-file",
                crate::pem::encode("X509 CRL", &self.pck_crl_der).into_bytes(),
            ),
            Some(other) => return error(400, &format!("unknown encoding {other:?}")),
        };
        response.with("SGX-PCK-CRL-Issuer-Chain", &self.pck_crl_chain)
    }

    fn tcb(&self, fmspc: Option<&str>) -> Response {
        let Some(fmspc) = fmspc else {
            return error(400, "missing parameter fmspc");
        };
        let mut wanted = [0u8; 6];
        if hex::decode_to_slice(fmspc, &mut wanted).is_err() {
            return error(400, "fmspc must be 12 hex digits");
        }
        if wanted != self.fmspc {
            return error(404, "no TCB info for this fmspc");
        }
        ok("application/json", self.tcb_body.clone().into_bytes())
            .with("TCB-Info-Issuer-Chain", &self.tcb_chain)
    }

    /// Serves connections from `listener` until `stop` is set, then waits (briefly) for
    /// in-flight requests. `log` gets one line per request.
    pub fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        stop: &AtomicBool,
        log: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let active = Arc::new(AtomicUsize::new(0));
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let guard = ActiveGuard::enter(&active);
                    let pccs = Arc::clone(self);
                    let conn_log = Arc::clone(&log);
                    let spawned =
                        thread::Builder::new()
                            .name("pccs-conn".into())
                            .spawn(move || {
                                let over = guard.count > MAX_CONNECTIONS;
                                pccs.handle(stream, peer, over, conn_log.as_ref());
                                drop(guard);
                            });
                    if let Err(e) = spawned {
                        log(&format!("{peer}: cannot start a connection thread: {e}"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL_INTERVAL),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log(&format!("accept failed: {e}"));
                    thread::sleep(POLL_INTERVAL);
                }
            }
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    fn handle(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        overloaded: bool,
        log: &(dyn Fn(&str) + Send + Sync),
    ) {
        if overloaded {
            let response = error(503, "too many connections");
            let result = write_response(&mut stream, &response, false);
            linger(&mut stream);
            log(&format!("{peer} \"-\" {}", outcome(&response, &result)));
            return;
        }
        if let Err(e) = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
        {
            log(&format!("{peer}: dropped: {e}"));
            return;
        }
        let mut buffered = Vec::new();
        let mut served = 0;
        while served < MAX_REQUESTS_PER_CONNECTION {
            let idle = if served == 0 {
                IO_TIMEOUT
            } else {
                KEEP_ALIVE_IDLE
            };
            let (request_line, response, keep_alive) =
                match self.read_request(&mut stream, &mut buffered, idle) {
                    Ok(Some(request)) => request,
                    // The client closed or went idle between requests: a normal end.
                    Ok(None) => break,
                    Err(e) => {
                        log(&format!("{peer}: dropped: {e}"));
                        return;
                    }
                };
            served += 1;
            let keep_alive = keep_alive && served < MAX_REQUESTS_PER_CONNECTION;
            let result = write_response(&mut stream, &response, keep_alive);
            log(&format!(
                "{peer} \"{request_line}\" {}",
                outcome(&response, &result)
            ));
            if result.is_err() || !keep_alive {
                break;
            }
        }
        linger(&mut stream);
        log(&format!(
            "{peer}: connection closed after {served} request(s)"
        ));
    }

    /// Reads the next request head (bytes past it stay in `buffered`); `None` when the client
    /// closed the connection or sent nothing within `idle`. The flag says whether the
    /// connection may stay open after the response.
    fn read_request(
        &self,
        stream: &mut TcpStream,
        buffered: &mut Vec<u8>,
        idle: Duration,
    ) -> io::Result<Option<(String, Response, bool)>> {
        stream.set_read_timeout(Some(idle))?;
        let head = match read_head(stream, buffered) {
            Ok(Head::Complete(head)) => head,
            Ok(Head::TooLarge) => {
                return Ok(Some((
                    "-".into(),
                    error(431, "request head too large"),
                    false,
                )));
            }
            Ok(Head::Closed) => return Ok(None),
            Err(e)
                if buffered.is_empty()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or_default().to_string();
        let mut words = line.split(' ');
        let (response, http11) = match (words.next(), words.next(), words.next(), words.next()) {
            (Some(method), Some(target), Some(version), None)
                if version.starts_with("HTTP/1.") && target.starts_with('/') =>
            {
                (self.respond(method, target), version == "HTTP/1.1")
            }
            _ => (error(400, "malformed request line"), false),
        };
        // Only the API's own answers keep the connection; an error, a request with a body
        // (GETs carry none) or one that asks to close ends it.
        let headers = text.lines().skip(1).map(|l| l.to_ascii_lowercase());
        let mut keep_alive = http11 && matches!(response.status, 200 | 404);
        for header in headers {
            let header = header.replace(' ', "");
            if header.starts_with("connection:close")
                || (header.starts_with("content-length:") && header != "content-length:0")
                || header.starts_with("transfer-encoding:")
            {
                keep_alive = false;
            }
        }
        // Request lines are logged, so keep them short and printable.
        let printable: String = line
            .chars()
            .take(200)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        Ok(Some((printable, response, keep_alive)))
    }
}

fn outcome(response: &Response, result: &io::Result<()>) -> String {
    match result {
        Ok(()) => format!("{} {}", response.status, response.body.len()),
        Err(e) => format!("{} not sent: {e}", response.status),
    }
}

impl Response {
    fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

fn ok(content_type: &str, body: Vec<u8>) -> Response {
    Response {
        status: 200,
        headers: vec![("Content-Type", content_type.to_string())],
        body,
    }
}

fn error(status: u16, detail: &str) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "text/plain".to_string())],
        body: format!("{detail} (sgx-sim SIMULATED PCCS)\n").into_bytes(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes the whole response with one `write_all` of one buffer: a head written separately
/// from the body would leave the body behind Nagle's algorithm until the client's delayed ACK
/// of the head (~40 ms on Linux) on every GET.
fn write_response(stream: &mut TcpStream, r: &Response, keep_alive: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (name, value) in &r.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let connection = if keep_alive {
        format!(
            "keep-alive\r\nKeep-Alive: timeout={}",
            KEEP_ALIVE_IDLE.as_secs()
        )
    } else {
        "close".to_owned()
    };
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: {connection}\r\nX-SGX-Sim: SIMULATED\r\n\r\n",
        r.body.len()
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.body);
    stream.write_all(&out)?;
    stream.flush()
}

/// Closes our side, then drains (bounded) what the client still sends, so closing does not
/// reset the connection before the client read the response (e.g. after a 431).
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).is_err()
        || stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err()
    {
        return;
    }
    let _ = io::copy(&mut (&*stream).take(MAX_LINGER_DRAIN), &mut io::sink());
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    /// The client closed the connection before sending anything more.
    Closed,
}

/// Reads up to the blank line ending the request head, at most [`MAX_REQUEST_HEAD`] bytes.
/// `buffered` holds bytes already read past the previous request; what follows this head is
/// left there.
fn read_head(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> io::Result<Head> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(buffered) {
            let rest = buffered.split_off(end);
            let head = std::mem::replace(buffered, rest);
            // Drop the blank line itself from what is kept for the next request.
            let skip = if buffered.starts_with(b"\r\n\r\n") {
                4
            } else {
                2
            };
            buffered.drain(..skip.min(buffered.len()));
            return Ok(Head::Complete(head));
        }
        if buffered.len() >= MAX_REQUEST_HEAD {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            if buffered.is_empty() {
                return Ok(Head::Closed);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the request head",
            ));
        }
        buffered.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `a=b&c=d`, percent-decoded.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| format!("query parameter {s:?} is not UTF-8"))
            };
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Counts a connection for as long as it lives.
struct ActiveGuard {
    active: Arc<AtomicUsize>,
    count: usize,
}

impl ActiveGuard {
    fn enter(active: &Arc<AtomicUsize>) -> Self {
        let count = active.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        Self {
            active: Arc::clone(active),
            count,
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pccs() -> Pccs {
        let collateral: QuoteCollateralV3 = serde_json::from_str(include_str!(
            "../../ratls/testdata/dcap-sample/sgx_quote_collateral.json"
        ))
        .unwrap();
        Pccs::new([0x00, 0xa0, 0x67, 0x11, 0x00, 0x00], &collateral)
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn tcb_info_is_served_for_its_fmspc_in_either_case_and_404_otherwise() {
        let p = pccs();
        for fmspc in ["00A067110000", "00a067110000"] {
            let r = p.respond(
                "GET",
                &format!("/sgx/certification/v4/tcb?fmspc={fmspc}&update=standard"),
            );
            assert_eq!(r.status, 200);
            let body = String::from_utf8(r.body.clone()).unwrap();
            assert!(body.starts_with("{\"tcbInfo\":{\"id\":\"SGX\""));
            assert!(
                header(&r, "TCB-Info-Issuer-Chain")
                    .unwrap()
                    .starts_with("-----BEGIN%20CERTIFICATE-----%0A")
            );
        }
        assert_eq!(
            p.respond("GET", "/sgx/certification/v4/tcb?fmspc=00A067110001")
                .status,
            404
        );
        assert_eq!(
            p.respond("GET", "/sgx/certification/v4/tcb?fmspc=zz")
                .status,
            400
        );
        assert_eq!(p.respond("GET", "/sgx/certification/v4/tcb").status, 400);
    }

    #[test]
    fn the_chain_header_decodes_back_to_the_pem_chain() {
        let collateral: QuoteCollateralV3 = serde_json::from_str(include_str!(
            "../../ratls/testdata/dcap-sample/sgx_quote_collateral.json"
        ))
        .unwrap();
        let r = pccs().respond(
            "GET",
            "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, collateral.pck_crl);
        let chain = header(&r, "SGX-PCK-CRL-Issuer-Chain").unwrap();
        assert!(chain.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(
            percent_decode_str(chain).decode_utf8().unwrap(),
            collateral.pck_crl_issuer_chain
        );
    }

    #[test]
    fn unknown_paths_cas_and_methods_are_refused() {
        let p = pccs();
        assert_eq!(
            p.respond("GET", "/sgx/certification/v3/qe/identity").status,
            404
        );
        assert_eq!(
            p.respond("GET", "/sgx/certification/v4/pckcert").status,
            404
        );
        assert_eq!(
            p.respond("GET", "/sgx/certification/v4/pckcrl?ca=platform")
                .status,
            404
        );
        assert_eq!(
            p.respond("GET", "/sgx/certification/v4/pckcrl?ca=other")
                .status,
            400
        );
        assert_eq!(p.respond("GET", "/sgx/certification/v4/pckcrl").status, 400);
        assert_eq!(
            p.respond("POST", "/sgx/certification/v4/qe/identity")
                .status,
            405
        );
        assert_eq!(
            p.respond("GET", "/sgx/certification/v4/rootcacrl?encoding=pem")
                .status,
            400
        );
    }

    #[test]
    fn head_requests_get_headers_without_a_body() {
        let r = pccs().respond("HEAD", "/sgx/certification/v4/qe/identity");
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert!(header(&r, "SGX-Enclave-Identity-Issuer-Chain").is_some());
    }

    #[test]
    fn the_root_crl_is_hex_by_default_and_der_on_request() {
        let p = pccs();
        let hex_body = p.respond("GET", "/sgx/certification/v4/rootcacrl").body;
        let der = p
            .respond("GET", "/sgx/certification/v4/rootcacrl?encoding=der")
            .body;
        assert_eq!(hex::decode(hex_body).unwrap(), der);
    }

    #[test]
    fn a_request_head_ends_at_the_first_blank_line() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"),
            Some(20)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
