//! The synchronous HTTPS server. One poller thread (epoll, through mio) owns every connection
//! that has nothing to say yet: it accepts, runs TLS handshakes without blocking, and parks
//! kept-alive connections between requests, each under a deadline (handshake, idle). Only a
//! connection whose request bytes have arrived is handed to the fixed pool of workers, so
//! idle or silent sockets (slowloris) cost a file descriptor and a few KiB, never a worker.
//! A worker answers what is there, under the request timeout, and gives a kept-alive
//! connection back to the poller. When every worker and the queue are busy, one more thread
//! answers `503`; overload is logged at most once per [`LOG_EVERY`], with counts.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::api;
use crate::http::{self, RequestReader, Response, Timed};
use crate::store::Store;

/// Stack of each worker; TLS, HTTP framing and SQLite need far less. Keeps the enclave's
/// memory budget small under Occlum.
const WORKER_STACK_BYTES: usize = 512 * 1024;
/// Connections that may wait for the busy responder before being closed unanswered.
const BUSY_QUEUE: usize = 32;
/// Time limit for the busy responder's read and write, per connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// After an error response, how long and how much to keep reading (and discarding) so the
/// client sees the response rather than a TCP reset caused by its unread request bytes.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
/// The busy responder lingers less: it must not become the bottleneck it reports.
const BUSY_LINGER_TIME: Duration = Duration::from_millis(100);
/// Pause after an accept failure such as EMFILE, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest request target written to the access log.
const LOG_TARGET_CHARS: usize = 200;
/// A TLS handshake must finish within this time (or the request timeout, if shorter).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the poller holds at once (handshaking or idle); beyond, new ones are closed.
/// Below the usual 20,000 file-descriptor limit, leaving room for the rest of the process.
const MAX_PARKED: usize = 16_000;
/// How often parked connections' deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Overload is reported at most this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Validated server limits (built by `cli`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub workers: usize,
    /// Connections with a request waiting for a worker before the busy responder takes over.
    pub max_pending: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub access_log: bool,
}

/// A connection between requests: its socket, its TLS session and any bytes already read.
struct Conn {
    tcp: TcpStream,
    tls: ServerConnection,
    reader: RequestReader,
    peer: SocketAddr,
}

struct Shared {
    store: Arc<Store>,
    settings: ServerSettings,
    queue: BoundedQueue<Conn>,
    busy: BoundedQueue<Conn>,
    /// Kept-alive connections workers give back to the poller, and the poller's wake-up.
    returned: Mutex<Vec<Conn>>,
    waker: Waker,
    overload: RateLog,
}

/// Serves until an unrecoverable error (thread creation, epoll); accept failures are retried.
pub fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    store: Arc<Store>,
    settings: &ServerSettings,
) -> io::Result<()> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let shared = Arc::new(Shared {
        store,
        settings: settings.clone(),
        queue: BoundedQueue::new(settings.max_pending),
        busy: BoundedQueue::new(BUSY_QUEUE),
        returned: Mutex::new(Vec::new()),
        waker,
        overload: RateLog::default(),
    });
    for i in 0..settings.workers {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || {
                loop {
                    let conn = shared.queue.pop();
                    if let Some(conn) = serve_connection(conn, &shared) {
                        shared.give_back(conn);
                    }
                }
            })?;
    }
    {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("busy".into())
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || {
                loop {
                    let conn = shared.busy.pop();
                    refuse_busy(conn, &shared);
                }
            })?;
    }
    Poller::new(poll, listener, tls, shared)?.run()
}

impl Shared {
    fn give_back(&self, conn: Conn) {
        lock(&self.returned).push(conn);
        if let Err(err) = self.waker.wake() {
            eprintln!("app: cannot wake the poller: {err}");
        }
    }

    /// A worker if one can take it, else the busy responder, else closed (and counted).
    fn dispatch(&self, conn: Conn) {
        let Err(conn) = self.queue.try_push(conn) else {
            return;
        };
        if let Err(conn) = self.busy.try_push(conn) {
            self.overload.count_closed(conn.peer);
        }
    }
}

/// A connection the poller holds, with the time it must have made progress by.
struct Parked {
    conn: Conn,
    deadline: Instant,
}

/// What reading a parked connection showed.
enum Progress {
    /// Nothing to serve yet.
    Wait,
    /// Handshake done and request bytes available: a worker's turn.
    Ready,
    /// Closed, failed or refused: drop it.
    Gone,
}

struct Poller {
    poll: Poll,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shared: Arc<Shared>,
    parked: HashMap<usize, Parked>,
    next_token: usize,
    swept: Instant,
}

impl Poller {
    fn new(
        poll: Poll,
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        shared: Arc<Shared>,
    ) -> io::Result<Poller> {
        listener.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        Ok(Poller {
            poll,
            listener,
            tls,
            shared,
            parked: HashMap::new(),
            next_token: 0,
            swept: Instant::now(),
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Err(err) = self.poll.poll(&mut events, Some(SWEEP_EVERY)) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => self.take_returned(),
                    Token(token) => self.progress(token),
                }
            }
            if self.swept.elapsed() >= SWEEP_EVERY {
                self.sweep();
            }
            self.shared.overload.flush();
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((tcp, peer)) => self.admit(tcp, peer),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => {
                    // EMFILE and the like: the listener stays readable, so back off briefly.
                    self.shared.overload.count_accept_error(&err);
                    std::thread::sleep(ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, tcp: TcpStream, peer: SocketAddr) {
        if self.parked.len() >= MAX_PARKED {
            self.shared.overload.count_closed(peer);
            return;
        }
        // Small responses must not wait for Nagle; failure only costs latency.
        let _ = tcp.set_nodelay(true);
        if let Err(err) = tcp.set_nonblocking(true) {
            eprintln!("app: {peer}: cannot make the socket non-blocking: {err}");
            return;
        }
        let tls = match ServerConnection::new(Arc::clone(&self.tls)) {
            Ok(tls) => tls,
            Err(err) => {
                eprintln!("app: {peer}: cannot start TLS: {err}");
                return;
            }
        };
        let timeout = HANDSHAKE_TIMEOUT.min(self.shared.settings.request_timeout);
        let conn = Conn {
            tcp,
            tls,
            reader: RequestReader::default(),
            peer,
        };
        // Readable for the client's bytes; writable for a handshake flight that did not fit.
        self.park(
            conn,
            Instant::now() + timeout,
            Interest::READABLE | Interest::WRITABLE,
        );
    }

    /// Kept-alive connections back from the workers: served again at once if a request is
    /// already buffered, else parked until one arrives or the idle timeout passes.
    fn take_returned(&mut self) {
        let returned = std::mem::take(&mut *lock(&self.shared.returned));
        let deadline = Instant::now() + self.shared.settings.idle_timeout;
        for mut conn in returned {
            if !conn.reader.is_empty() || has_plaintext(&mut conn.tls) {
                self.shared.dispatch(conn);
            } else if conn.tcp.set_nonblocking(true).is_ok() {
                self.park(conn, deadline, Interest::READABLE);
            }
        }
    }

    fn park(&mut self, conn: Conn, deadline: Instant, interest: Interest) {
        let token = self.next_token;
        self.next_token = (self.next_token + 1) % (usize::MAX - 2);
        let registered = self.poll.registry().register(
            &mut SourceFd(&conn.tcp.as_raw_fd()),
            Token(token),
            interest,
        );
        if let Err(err) = registered {
            eprintln!("app: {}: cannot watch the socket: {err}", conn.peer);
            return;
        }
        self.parked.insert(token, Parked { conn, deadline });
    }

    fn progress(&mut self, token: usize) {
        let Some(parked) = self.parked.get_mut(&token) else {
            return;
        };
        match drive(&mut parked.conn, self.shared.settings.access_log) {
            Progress::Wait => {}
            Progress::Ready => {
                if let Some(parked) = self.unpark(token) {
                    self.shared.dispatch(parked.conn);
                }
            }
            Progress::Gone => {
                self.unpark(token);
            }
        }
    }

    fn unpark(&mut self, token: usize) -> Option<Parked> {
        let parked = self.parked.remove(&token)?;
        // Closing the socket would remove it too; a worker keeps it open, so say so.
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&parked.conn.tcp.as_raw_fd()));
        Some(parked)
    }

    /// Drops connections past their deadline: handshakes too slow, clients idle too long.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.swept = now;
        let expired: Vec<usize> = self
            .parked
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&token, _)| token)
            .collect();
        for token in expired {
            if let Some(parked) = self.unpark(token) {
                let _ = parked.conn.tcp.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Reads what the socket has (until it would block), advances the handshake, and writes
/// what TLS wants to send. Never blocks.
fn drive(conn: &mut Conn, access_log: bool) -> Progress {
    let mut eof = false;
    loop {
        match conn.tls.read_tls(&mut conn.tcp) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(_) => {
                if let Err(err) = conn.tls.process_new_packets() {
                    // Send the alert, best effort, then give up on the connection.
                    let _ = conn.tls.write_tls(&mut conn.tcp);
                    if access_log {
                        eprintln!("app: {} TLS handshake failed: {err}", conn.peer);
                    }
                    return Progress::Gone;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // rustls's buffers are full: plenty to serve if the handshake is done.
            Err(_) if !conn.tls.is_handshaking() => return Progress::Ready,
            Err(_) => return Progress::Gone,
        }
    }
    while conn.tls.wants_write() {
        match conn.tls.write_tls(&mut conn.tcp) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Progress::Gone,
        }
    }
    if !conn.tls.is_handshaking() && has_plaintext(&mut conn.tls) {
        return Progress::Ready;
    }
    if eof { Progress::Gone } else { Progress::Wait }
}

fn has_plaintext(tls: &mut ServerConnection) -> bool {
    tls.process_new_packets()
        .map(|state| state.plaintext_bytes_to_read() > 0)
        .unwrap_or(false)
}

/// Answers the requests that have arrived; returns the connection if it is kept alive.
fn serve_connection(conn: Conn, shared: &Shared) -> Option<Conn> {
    let settings = &shared.settings;
    let Conn {
        tcp,
        tls,
        mut reader,
        peer,
    } = conn;
    let mut stream = match blocking_stream(tcp, tls, settings.request_timeout) {
        Ok(stream) => stream,
        Err(err) => {
            eprintln!("app: {peer}: cannot prepare the socket: {err}");
            return None;
        }
    };
    let mut out = Vec::with_capacity(1024);
    // The request's bytes are there (or buffered): the whole of it must follow within the
    // request timeout. The idle wait happened in the poller, so it is not repeated here.
    let linger = loop {
        match reader.read_request(
            &mut stream,
            settings.request_timeout,
            settings.request_timeout,
        ) {
            Ok(None) => break false,
            Ok(Some(req)) => {
                let started = Instant::now();
                let response = api::handle(&req, &shared.store);
                // When requests wait with no idle worker to take them, ask a kept-alive client
                // to reconnect, so the queue drains.
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
                if reader.is_empty() && !has_plaintext(&mut stream.conn) {
                    let StreamOwned { conn: tls, sock } = stream;
                    return Some(Conn {
                        tcp: sock.tcp,
                        tls,
                        reader,
                        peer,
                    });
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
    close(stream, linger, LINGER_TIME);
    None
}

/// Answers `503` to a connection no worker could take, within [`BUSY_TIMEOUT`].
fn refuse_busy(conn: Conn, shared: &Shared) {
    let Conn {
        tcp,
        tls,
        mut reader,
        peer,
    } = conn;
    let Ok(mut stream) = blocking_stream(tcp, tls, BUSY_TIMEOUT) else {
        return;
    };
    // Read the request first, so the client gets the answer to what it sent.
    let _ = reader.read_request(&mut stream, BUSY_TIMEOUT, BUSY_TIMEOUT);
    let mut response = Response::error(503, "server busy, retry later");
    response.retry_after = Some(1);
    let mut out = Vec::new();
    response.write_to(&mut out, false, false, false);
    let _ = stream.write_all(&out).and_then(|()| stream.flush());
    shared.overload.count_busy(peer);
    close(stream, true, BUSY_LINGER_TIME);
}

type TlsStream = StreamOwned<ServerConnection, DeadlineTcp>;

/// The socket back in blocking mode, reads under a deadline `timeout` from now, writes
/// under `timeout` each.
fn blocking_stream(
    tcp: TcpStream,
    tls: ServerConnection,
    timeout: Duration,
) -> io::Result<TlsStream> {
    tcp.set_nonblocking(false)?;
    tcp.set_write_timeout(Some(timeout))?;
    let sock = DeadlineTcp {
        tcp,
        deadline: Instant::now() + timeout,
    };
    Ok(StreamOwned::new(tls, sock))
}

/// Counts overload events and reports them at most once per [`LOG_EVERY`]: a flood of
/// refused connections must not become a flood of log lines.
#[derive(Default)]
struct RateLog {
    closed: AtomicU64,
    busy: AtomicU64,
    accept_errors: AtomicU64,
    state: Mutex<RateLogState>,
}

#[derive(Default)]
struct RateLogState {
    last: Option<Instant>,
    last_peer: Option<SocketAddr>,
    last_error: Option<String>,
}

impl RateLog {
    fn count_closed(&self, peer: SocketAddr) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        lock(&self.state).last_peer = Some(peer);
        self.flush();
    }

    fn count_busy(&self, peer: SocketAddr) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        lock(&self.state).last_peer = Some(peer);
        self.flush();
    }

    fn count_accept_error(&self, err: &io::Error) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.state).last_error = Some(err.to_string());
        self.flush();
    }

    /// Writes one line with the counts since the last one, if [`LOG_EVERY`] has passed.
    fn flush(&self) {
        let mut state = lock(&self.state);
        if state.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        let closed = self.closed.swap(0, Ordering::Relaxed);
        let busy = self.busy.swap(0, Ordering::Relaxed);
        let errors = self.accept_errors.swap(0, Ordering::Relaxed);
        if closed + busy + errors == 0 {
            return;
        }
        let since = state
            .last
            .map(|t| format!("{:.1} s", t.elapsed().as_secs_f64()))
            .unwrap_or_else(|| "start".into());
        state.last = Some(Instant::now());
        let peer = state
            .last_peer
            .map(|p| format!("; last peer {p}"))
            .unwrap_or_default();
        let error = state
            .last_error
            .take()
            .map(|e| format!("; last accept error: {e}"))
            .unwrap_or_default();
        eprintln!(
            "app: overloaded (since {since}): {busy} answered 503, {closed} closed unanswered, \
             {errors} accept failures{peer}{error}"
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent: a poisoned lock is usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends close_notify; after an error response also half-closes and drains what the client
/// is still sending (bounded), so the response is not lost to a reset.
fn close(mut stream: TlsStream, linger: bool, linger_time: Duration) {
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
    let until = Instant::now() + linger_time;
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
        // The 100 ms deadline plus a wide margin; without the deadline the read never returns.
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            sock.read(&mut [0u8; 8]).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        drop(client);
    }
}
