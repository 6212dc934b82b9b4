//! One forwarded connection: the client's socket, the gate's upstream socket to gRPC core,
//! a bounded buffer each way, and [`Conn::pump`], which moves bytes both ways within the
//! connection's, its peer's and the total ingress budget. This is the gate's per-read and
//! per-write path.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::Limits;
use super::budget::{Bucket, PeerKey};
use super::clients::Attested;
/// Bytes buffered per direction per connection.
const BUF_LEN: usize = 16 * 1024;

/// Bytes waiting to be written one way.
pub(super) struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub(super) fn new() -> Buf {
        Buf {
            data: vec![0; BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Room at the end, after moving what is buffered to the front.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.data.get_mut(self.end..).unwrap_or_default()
    }

    pub(super) fn pending(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or_default()
    }
}

/// One client connection and its upstream connection.
pub(super) struct Conn {
    pub(super) client: TcpStream,
    pub(super) upstream: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) key: PeerKey,
    pub(super) up_port: u16,
    pub(super) up_connected: bool,
    pub(super) to_up: Buf,
    pub(super) to_client: Buf,
    pub(super) client_eof: bool,
    pub(super) upstream_eof: bool,
    pub(super) up_shut: bool,
    pub(super) bucket: Bucket,
    /// Set by the service once the client is attested ([`super::mark_attested`]).
    pub(super) attested: Arc<Attested>,
    /// The gate has seen `attested` and taken the connection out of the budgets.
    pub(super) exempt: bool,
    /// Bytes read from the client so far.
    pub(super) received: u64,
    pub(super) opened: Instant,
    pub(super) last_ingress: Instant,
    /// Not read because a bucket is empty, since this instant.
    pub(super) throttled: Option<Instant>,
    pub(super) throttle_audited: bool,
    /// Output to the client has waited since this instant.
    pub(super) stalled: Option<Instant>,
}

/// Why a connection ends.
pub(super) enum End {
    /// Both directions finished.
    Done,
    /// A socket error.
    Io(io::Error),
}

impl Conn {
    pub(super) fn finished(&self) -> bool {
        // Once gRPC core has closed its side and everything it sent is out, the client has
        // nothing more to gain from the connection.
        self.upstream_eof && self.to_client.is_empty()
    }

    /// Moves bytes both ways. `budgets` are the peer's and the total bucket, which with the
    /// connection's own bound what is read from the client; `None` once it is attested.
    pub(super) fn pump(
        &mut self,
        now: Instant,
        limits: &Limits,
        mut budgets: Option<(&mut Bucket, &mut Bucket)>,
        reserve: usize,
    ) -> Result<(), End> {
        if let Some((peer, total)) = budgets.as_mut() {
            self.bucket.refill(limits.connection_rate, now);
            peer.refill(limits.peer_rate, now);
            total.refill(limits.total_rate, now);
        }
        self.throttled = None;
        if !self.up_connected {
            match self.upstream.peer_addr() {
                Ok(_) => self.up_connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(End::Io(e)),
            }
            if let Ok(Some(e)) = self.upstream.take_error() {
                return Err(End::Io(e));
            }
        }
        loop {
            let mut moved = false;
            // Client -> gRPC core, within the budgets.
            if !self.client_eof {
                let budget = match budgets.as_ref() {
                    Some((peer, total)) => self
                        .bucket
                        .available()
                        .min(peer.available())
                        .min(total.available().saturating_sub(reserve)),
                    None => usize::MAX,
                };
                let spare = self.to_up.spare();
                let want = budget.min(spare.len());
                if !spare.is_empty() && want == 0 {
                    self.throttled = Some(now);
                } else if let Some(room) = spare.get_mut(..want).filter(|r| !r.is_empty()) {
                    match self.client.read(room) {
                        Ok(0) => {
                            self.client_eof = true;
                            moved = true;
                        }
                        Ok(n) => {
                            self.to_up.end += n;
                            self.received += n as u64;
                            if let Some((peer, total)) = budgets.as_mut() {
                                self.bucket.take(n);
                                peer.take(n);
                                total.take(n);
                            }
                            self.last_ingress = now;
                            moved = true;
                        }
                        Err(e) if would_block(&e) => {}
                        Err(e) => return Err(End::Io(e)),
                    }
                }
            }
            if self.up_connected {
                moved |= write_out(&mut self.upstream, &mut self.to_up)?;
                if self.client_eof && self.to_up.is_empty() && !self.up_shut {
                    self.up_shut = true;
                    let _ = self.upstream.shutdown(Shutdown::Write);
                }
                // gRPC core -> client: not limited.
                if !self.upstream_eof {
                    let spare = self.to_client.spare();
                    if !spare.is_empty() {
                        match self.upstream.read(spare) {
                            Ok(0) => {
                                self.upstream_eof = true;
                                moved = true;
                            }
                            Ok(n) => {
                                self.to_client.end += n;
                                moved = true;
                            }
                            Err(e) if would_block(&e) => {}
                            Err(e) => return Err(End::Io(e)),
                        }
                    }
                }
            }
            moved |= write_out(&mut self.client, &mut self.to_client)?;
            if self.client_eof && self.up_shut && self.upstream_eof && self.to_client.is_empty() {
                return Err(End::Done);
            }
            if !moved {
                break;
            }
        }
        self.stalled = match (self.to_client.is_empty(), self.stalled) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(now),
        };
        Ok(())
    }
}

/// Writes what `buf` holds to `to` until it would block; true if anything was written.
fn write_out(to: &mut TcpStream, buf: &mut Buf) -> Result<bool, End> {
    let mut moved = false;
    while !buf.is_empty() {
        match to.write(buf.pending()) {
            Ok(0) => {
                return Err(End::Io(io::Error::from(io::ErrorKind::WriteZero)));
            }
            Ok(n) => {
                buf.start += n;
                moved = true;
            }
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(End::Io(e)),
        }
    }
    if buf.is_empty() {
        buf.start = 0;
        buf.end = 0;
    }
    Ok(moved)
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::NotConnected
    )
}
