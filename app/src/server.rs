//! The synchronous HTTPS server: one accept loop hands connections to a bounded queue served
//! by a fixed pool of worker threads; one more thread answers `503` when the queue is full.
//! Every socket read runs under a deadline (TLS handshake, request, keep-alive idle), every
//! write under a timeout, so no client can hold a worker longer than those limits allow.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::api;
use crate::http::{self, RequestReader, Response, Timed};
use crate::store::Store;

/// Stack of each worker; TLS, HTTP framing and SQLite need far less. Keeps the enclave's
/// memory budget small under Occlum.
const WORKER_STACK_BYTES: usize = 512 * 1024;
/// Connections that may wait for the busy responder before being closed unanswered.
const BUSY_QUEUE: usize = 32;
/// Time limit for the busy responder's handshake, read and write, per connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// After an error response, how long and how much to keep reading (and discarding) so the
/// client sees the response rather than a TCP reset caused by its unread request bytes.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
/// Pause after an accept failure such as EMFILE, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest request target written to the access log.
const LOG_TARGET_CHARS: usize = 200;

/// Validated server limits (built by `cli`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub workers: usize,
    /// Accepted connections waiting for a worker before the busy responder takes over.
    pub max_pending: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub access_log: bool,
}

type Pending = (TcpStream, SocketAddr);

struct Shared {
    tls: Arc<ServerConfig>,
    store: Arc<Store>,
    settings: ServerSettings,
    queue: BoundedQueue<Pending>,
}

/// Serves until an unrecoverable error (thread creation); accept failures are retried.
pub fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    store: Arc<Store>,
    settings: &ServerSettings,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        tls,
        store,
        settings: settings.clone(),
        queue: BoundedQueue::new(settings.max_pending),
    });
    for i in 0..settings.workers {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || {
                loop {
                    let (tcp, peer) = shared.queue.pop();
                    serve_connection(tcp, peer, &shared);
                }
            })?;
    }
    let busy = Arc::new(BoundedQueue::<Pending>::new(BUSY_QUEUE));
    {
        let busy = Arc::clone(&busy);
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("busy".into())
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || {
                loop {
                    let (tcp, peer) = busy.pop();
                    refuse_busy(tcp, peer, &shared);
                }
            })?;
    }
    loop {
        match listener.accept() {
            Ok(pending) => {
                if let Err(pending) = shared.queue.try_push(pending) {
                    if let Err((_, peer)) = busy.try_push(pending) {
                        eprintln!("app: {peer}: overloaded, connection closed unanswered");
                    }
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => {
                eprintln!("app: accept failed: {err}");
                std::thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Handshake, then requests until the client closes, idles out, errs, or others wait.
fn serve_connection(tcp: TcpStream, peer: SocketAddr, shared: &Shared) {
    let settings = &shared.settings;
    let Some(mut stream) = accept_tls(tcp, peer, &shared.tls, settings.request_timeout, settings)
    else {
        return;
    };
    let mut reader = RequestReader::default();
    let mut out = Vec::with_capacity(1024);
    let linger = loop {
        match reader.read_request(&mut stream, settings.idle_timeout, settings.request_timeout) {
            Ok(None) => break false,
            Ok(Some(req)) => {
                let started = Instant::now();
                let response = api::handle(&req, &shared.store);
                // When accepted connections wait with no idle worker to take them, a kept-alive
                // connection would starve them: ask this client to reconnect instead.
                let keep = req.keep_alive && !response.close && !shared.queue.is_starving();
                out.clear();
                response.write_to(&mut out, req.method == "HEAD", keep, req.minor_version == 0);
                let sent = stream.write_all(&out).and_then(|()| stream.flush());
                if settings.access_log {
                    log_request(peer, &req.method, &req.target, response.status, started);
                }
                if sent.is_err() || !keep {
                    break false;
                }
            }
            Err(err) => {
                let Some(response) = err.response() else {
                    if let http::RequestError::Io(io_err) = &err {
                        if settings.access_log && !http::is_disconnect(io_err) {
                            eprintln!("app: {peer} connection failed mid-request: {io_err}");
                        }
                    }
                    break false;
                };
                out.clear();
                response.write_to(&mut out, false, false, false);
                let _ = stream.write_all(&out).and_then(|()| stream.flush());
                if settings.access_log {
                    eprintln!("app: {peer} (unreadable request) {}", response.status);
                }
                break true;
            }
        }
    };
    close(stream, linger);
}

/// Answers `503` to a connection no worker could take, within [`BUSY_TIMEOUT`].
fn refuse_busy(tcp: TcpStream, peer: SocketAddr, shared: &Shared) {
    let Some(mut stream) = accept_tls(tcp, peer, &shared.tls, BUSY_TIMEOUT, &shared.settings)
    else {
        return;
    };
    // Read the request first, so the client gets the answer to what it sent.
    let _ = RequestReader::default().read_request(&mut stream, BUSY_TIMEOUT, BUSY_TIMEOUT);
    let mut response = Response::error(503, "server busy, retry later");
    response.retry_after = Some(1);
    let mut out = Vec::new();
    response.write_to(&mut out, false, false, false);
    let _ = stream.write_all(&out).and_then(|()| stream.flush());
    eprintln!("app: {peer} overloaded 503");
    close(stream, true);
}

type TlsStream = StreamOwned<ServerConnection, DeadlineTcp>;

/// Completes the TLS handshake before `timeout`; failures are logged and the socket dropped.
fn accept_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: &Arc<ServerConfig>,
    timeout: Duration,
    settings: &ServerSettings,
) -> Option<TlsStream> {
    // Small responses must not wait for Nagle; failure only costs latency.
    let _ = tcp.set_nodelay(true);
    if let Err(err) = tcp.set_write_timeout(Some(settings.request_timeout.min(timeout))) {
        eprintln!("app: {peer}: cannot set a write timeout: {err}");
        return None;
    }
    let mut sock = DeadlineTcp {
        tcp,
        deadline: Instant::now() + timeout,
    };
    let mut conn = match ServerConnection::new(Arc::clone(tls)) {
        Ok(conn) => conn,
        Err(err) => {
            eprintln!("app: {peer}: cannot start TLS: {err}");
            return None;
        }
    };
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) => return None,
            Ok(_) => {}
            Err(err) => {
                if settings.access_log && !http::is_disconnect(&err) {
                    eprintln!("app: {peer} TLS handshake failed: {err}");
                }
                return None;
            }
        }
    }
    Some(StreamOwned::new(conn, sock))
}

/// Sends close_notify; after an error response also half-closes and drains what the client
/// is still sending (bounded), so the response is not lost to a reset.
fn close(mut stream: TlsStream, linger: bool) {
    stream.conn.send_close_notify();
    while stream.conn.wants_write() {
        if stream.conn.write_tls(&mut stream.sock).is_err() {
            return;
        }
    }
    if !linger {
        return;
    }
    let tcp = &mut stream.sock.tcp;
    if tcp.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + LINGER_TIME;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match tcp.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

fn log_request(peer: SocketAddr, method: &str, target: &str, status: u16, started: Instant) {
    let shown: String = target
        .chars()
        .take(LOG_TARGET_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "app: {peer} {} {shown} {status} {ms:.2}ms",
        method.escape_debug()
    );
}

/// A TCP stream whose reads time out at an absolute deadline (each read gets the time left).
struct DeadlineTcp {
    tcp: TcpStream,
    deadline: Instant,
}

impl Read for DeadlineTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl Timed for TlsStream {
    fn set_deadline(&mut self, deadline: Instant) {
        self.sock.deadline = deadline;
    }
}

/// A fixed-capacity FIFO shared by the accept loop (producer) and the workers, which also
/// knows how many consumers are idle, so a worker can tell whether queued items are starving.
struct BoundedQueue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
    capacity: usize,
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// Consumers blocked in `pop`.
    idle: usize,
}

impl<T> BoundedQueue<T> {
    fn new(capacity: usize) -> Self {
        BoundedQueue {
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity),
                idle: 0,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    /// Hands the item back when the queue is full.
    fn try_push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.items.len() >= self.capacity {
            return Err(item);
        }
        state.items.push_back(item);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    fn pop(&self) -> T {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return item;
            }
            state.idle += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.idle -= 1;
        }
    }

    /// More items wait than idle consumers will take: a busy consumer should yield.
    fn is_starving(&self) -> bool {
        let state = self.lock();
        state.items.len() > state.idle
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        // Queue operations cannot leave the state inconsistent, so a poisoned lock is usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_hands_the_item_back() {
        let queue = BoundedQueue::new(2);
        queue.try_push(1).unwrap();
        queue.try_push(2).unwrap();
        assert_eq!(queue.try_push(3), Err(3));
        assert_eq!(queue.pop(), 1);
        queue.try_push(4).unwrap();
        assert_eq!((queue.pop(), queue.pop()), (2, 4));
    }

    #[test]
    fn queued_items_starve_only_without_an_idle_consumer() {
        let queue = Arc::new(BoundedQueue::new(4));
        assert!(!queue.is_starving());
        queue.try_push(1).unwrap();
        assert!(queue.is_starving(), "nobody will take it");
        assert_eq!(queue.pop(), 1);
        let consumer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.pop())
        };
        while queue.lock().idle == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        queue.try_push(2).unwrap();
        // Either still queued with its consumer waking up, or already taken.
        assert!(!queue.is_starving());
        assert_eq!(consumer.join().unwrap(), 2);
    }

    #[test]
    fn pop_waits_for_a_push_from_another_thread() {
        let queue = Arc::new(BoundedQueue::new(1));
        let consumer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.pop())
        };
        std::thread::sleep(Duration::from_millis(50));
        queue.try_push("item").unwrap();
        assert_eq!(consumer.join().unwrap(), "item");
    }

    #[test]
    fn a_read_after_the_deadline_times_out_without_blocking() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        let mut sock = DeadlineTcp {
            tcp,
            deadline: Instant::now() + Duration::from_millis(100),
        };
        let started = Instant::now();
        let err = sock.read(&mut [0u8; 8]).unwrap_err();
        assert!(http::is_timeout(&err), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            sock.read(&mut [0u8; 8]).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        drop(client);
    }
}
