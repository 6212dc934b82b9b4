//! The replica's own threads: etcd is only ever called here (and by admin writes on the admin
//! server's own threads), never on the threads that answer GetSecret.
//!
//! - `kms-cluster`: key acquisition (own slot, then each peer, retried every
//!   [`PEER_RETRY`]; never an automatic genesis), then the watchdog: a linearizable read of
//!   the state every [`WATCHDOG`] (watch events can be lost), which also measures staleness
//!   and notices etcd going away and coming back (audited transitions);
//! - `kms-cluster-watch`: the watch stream on the state key, reconnected with backoff
//!   (capped at [`MAX_BACKOFF`]); every event goes through the same verification as a read.

use std::sync::Arc;
use std::time::Duration;

use super::replica::Cluster;

/// Period of the linearizable read.
pub const WATCHDOG: Duration = Duration::from_secs(2);
/// How often peers are asked for the key while none is held.
pub const PEER_RETRY: Duration = Duration::from_secs(2);
/// Longest wait between watch reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Starts both threads.
pub fn start(cluster: &Arc<Cluster>) -> std::io::Result<()> {
    let keeper = Arc::clone(cluster);
    std::thread::Builder::new()
        .name("kms-cluster".into())
        .spawn(move || run_keeper(&keeper))?;
    let watcher = Arc::clone(cluster);
    std::thread::Builder::new()
        .name("kms-cluster-watch".into())
        .spawn(move || run_watch(&watcher))?;
    Ok(())
}

fn run_keeper(cluster: &Cluster) {
    cluster.acquire_from_slot();
    while !cluster.stopped() {
        if !cluster.has_key() {
            if !cluster.acquire_from_peers() {
                std::thread::sleep(PEER_RETRY);
            }
            continue;
        }
        cluster.refresh();
        std::thread::sleep(WATCHDOG);
    }
}

fn run_watch(cluster: &Cluster) {
    let mut backoff = MIN_BACKOFF;
    while !cluster.stopped() {
        if !cluster.has_key() {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        // Events after the last revision seen; 0 (nothing seen yet) watches from now.
        let from = match cluster.watch_from() {
            0 => 0,
            seen => seen + 1,
        };
        let outcome = cluster
            .etcd
            .watch(&cluster.state_key, from, &cluster.stop, &mut |kv| {
                cluster.consider(&kv, "watch");
            });
        match outcome {
            // The stream ended (etcd restarted, a proxy closed it): reconnect at once.
            Ok(()) => backoff = MIN_BACKOFF,
            Err(_) => {
                // The watchdog audits reachability; the watch just retries.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
