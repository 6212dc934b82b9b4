//! The KMS's etcd client (src/cluster/etcd.rs) against a real 3-member etcd cluster on
//! loopback: compare-and-swap, linearizable reads across members, the watch stream, failover
//! between endpoints, and the errors a person reads when etcd is down or refuses a request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/etcd.rs"]
mod etcd_cluster;

#[path = "../src/cluster/etcd.rs"]
#[allow(dead_code)]
mod etcd;

#[path = "../src/cluster/envelope.rs"]
#[allow(dead_code)]
mod envelope;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use etcd::{Cas, Etcd, EtcdError, Kv};
use etcd_cluster::EtcdCluster;

const TIMEOUT: Duration = Duration::from_secs(2);
const KEY: &[u8] = b"/occlum-kms/v1/demo/state";

fn client(endpoints: &[String]) -> Etcd {
    Etcd::new(endpoints, TIMEOUT).unwrap()
}

fn only(cluster: &EtcdCluster, i: usize) -> Etcd {
    client(&cluster.endpoints()[i..=i])
}

fn done(cas: Cas) -> i64 {
    match cas {
        Cas::Done { revision } => revision,
        other => panic!("expected the write to happen, got {other:?}"),
    }
}

fn conflict(cas: Cas) -> Option<Kv> {
    match cas {
        Cas::Conflict { current } => current,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn a_key_is_created_once_and_every_member_reads_it() {
    let cluster = EtcdCluster::start(3);
    let etcd = client(&cluster.endpoints());
    let (missing, rev0) = etcd.get(KEY).unwrap();
    assert!(missing.is_none());
    assert!(rev0 >= 1);

    let rev = done(etcd.put_if(KEY, b"gen-1", 0).unwrap());
    assert!(rev > rev0);
    for i in 0..3 {
        let (kv, header) = only(&cluster, i).get(KEY).unwrap();
        let kv = kv.unwrap_or_else(|| panic!("member {i} does not see the key"));
        assert_eq!(kv.value, b"gen-1");
        assert_eq!((kv.mod_revision, kv.create_revision), (rev, rev));
        assert!(header >= rev);
    }

    // A second create loses and returns what is there.
    let current = conflict(etcd.put_if(KEY, b"other", 0).unwrap()).unwrap();
    assert_eq!(current.value, b"gen-1");
    assert_eq!(current.mod_revision, rev);
}

#[test]
fn a_stale_compare_and_swap_fails_and_returns_the_current_value() {
    let cluster = EtcdCluster::start(3);
    let etcd = client(&cluster.endpoints());
    let r1 = done(etcd.put_if(KEY, b"gen-1", 0).unwrap());
    let r2 = done(etcd.put_if(KEY, b"gen-2", r1).unwrap());
    assert!(r2 > r1);

    // A writer that read gen-1 (revision r1) loses against gen-2.
    let current = conflict(etcd.put_if(KEY, b"gen-2-fork", r1).unwrap()).unwrap();
    assert_eq!(current.value, b"gen-2");
    assert_eq!(current.mod_revision, r2);
    assert_eq!(current.create_revision, r1);
    assert_eq!(etcd.get(KEY).unwrap().0.unwrap().value, b"gen-2");

    // A CAS on a key that was deleted meanwhile reports it absent.
    assert_eq!(etcd.delete(KEY).unwrap(), 1);
    assert_eq!(conflict(etcd.put_if(KEY, b"gen-3", r2).unwrap()), None);
    assert_eq!(etcd.delete(KEY).unwrap(), 0);
}

#[test]
fn a_write_through_one_member_is_read_at_once_through_another() {
    let cluster = EtcdCluster::start(3);
    let writer = only(&cluster, 0);
    let reader = only(&cluster, 2);
    let mut rev = 0;
    for n in 0..30 {
        let value = format!("gen-{n}");
        rev = done(writer.put_if(KEY, value.as_bytes(), rev).unwrap());
        // Linearizable: no sleep, no retry.
        let (kv, header) = reader.get(KEY).unwrap();
        let kv = kv.unwrap();
        assert_eq!(kv.value, value.as_bytes(), "round {n}");
        assert_eq!(kv.mod_revision, rev);
        assert!(header >= rev);
    }
}

#[test]
fn watch_delivers_a_put_made_through_another_member_and_returns_on_stop() {
    let cluster = EtcdCluster::start(3);
    let watcher = only(&cluster, 0);
    let writer = only(&cluster, 1);
    let r1 = done(writer.put_if(KEY, b"before", 0).unwrap());
    // An unrelated key with the same prefix must not be reported.
    let other_key = [KEY, b"-other"].concat();

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let result = watcher.watch(KEY, r1 + 1, &stop, &mut |kv| {
                let _ = tx.send(kv);
            });
            (result, Instant::now())
        })
    };
    // Give the watch time to be created before writing (the start revision covers a write
    // that wins the race anyway).
    std::thread::sleep(Duration::from_millis(200));
    done(writer.put_if(&other_key, b"noise", 0).unwrap());
    let r2 = done(writer.put_if(KEY, b"after", r1).unwrap());
    let event = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("no watch event");
    assert_eq!(event.value, b"after");
    assert_eq!(event.mod_revision, r2);
    // A delete is not a PUT: not reported (the caller's periodic read sees it).
    assert_eq!(writer.delete(KEY).unwrap(), 1);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "unexpected extra event"
    );

    let stopped_at = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let (result, returned_at) = thread.join().unwrap();
    result.unwrap();
    let took = returned_at.duration_since(stopped_at);
    assert!(took < Duration::from_secs(1), "watch took {took:?} to stop");
}

#[test]
fn watch_from_a_past_revision_replays_the_puts_since() {
    let cluster = EtcdCluster::start(3);
    let etcd = client(&cluster.endpoints());
    let r1 = done(etcd.put_if(KEY, b"one", 0).unwrap());
    let r2 = done(etcd.put_if(KEY, b"two", r1).unwrap());
    let stop = AtomicBool::new(false);
    let mut seen = Vec::new();
    etcd.watch(KEY, r1, &stop, &mut |kv| {
        seen.push((kv.value, kv.mod_revision));
        if seen.len() == 2 {
            stop.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    assert_eq!(seen, vec![(b"one".to_vec(), r1), (b"two".to_vec(), r2)]);
}

#[test]
fn watch_from_a_compacted_revision_fails_naming_the_compaction() {
    let cluster = EtcdCluster::start(3);
    let etcd = client(&cluster.endpoints());
    let mut rev = 0;
    for n in 0..5 {
        rev = done(etcd.put_if(KEY, format!("g{n}").as_bytes(), rev).unwrap());
    }
    compact(&cluster.endpoints()[0], rev);
    let stop = AtomicBool::new(false);
    let err = etcd.watch(KEY, 2, &stop, &mut |_| {}).unwrap_err();
    match &err {
        EtcdError::Compacted {
            start_revision,
            compact_revision,
            key,
            ..
        } => {
            assert_eq!(*start_revision, 2);
            assert_eq!(*compact_revision, rev);
            assert_eq!(key.as_bytes(), KEY);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("compacted") && text.contains("/occlum-kms/v1/demo/state"),
        "{text}"
    );
    // The caller restarts from a fresh read, and that watch works.
    let (_, header) = etcd.get(KEY).unwrap();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            etcd.watch(KEY, header + 1, &stop, &mut |kv| {
                let _ = tx.send(kv.value);
            })
        });
        done(
            client(&cluster.endpoints())
                .put_if(KEY, b"fresh", rev)
                .unwrap(),
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"fresh");
        stop.store(true, Ordering::SeqCst);
    });
}

#[test]
fn calls_fail_over_when_the_first_endpoints_member_is_killed() {
    let mut cluster = EtcdCluster::start(3);
    // The first endpoint is a follower's: killing the leader would add an election (a second
    // or more of "leader changed") to what this test measures, the client's failover.
    let victim = (0..3).find(|&i| i != cluster.leader()).unwrap();
    let all = cluster.endpoints();
    let mut endpoints = vec![all[victim].clone()];
    endpoints.extend((0..3).filter(|&i| i != victim).map(|i| all[i].clone()));
    let survivor = (0..3).find(|&i| i != victim).unwrap();
    let etcd = client(&endpoints);
    let r1 = done(etcd.put_if(KEY, b"gen-1", 0).unwrap());
    cluster.kill(victim);

    let started = Instant::now();
    let (kv, _) = etcd.get(KEY).unwrap();
    assert_eq!(kv.unwrap().value, b"gen-1");
    let r2 = done(etcd.put_if(KEY, b"gen-2", r1).unwrap());
    assert!(r2 > r1);
    // A refused connection is immediate: failover does not wait for the timeout.
    assert!(
        started.elapsed() < TIMEOUT,
        "failover took {:?}",
        started.elapsed()
    );

    // A watch through the same client is served by a live member too.
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            etcd.watch(KEY, r2 + 1, &stop, &mut |kv| {
                let _ = tx.send(kv.value);
            })
        });
        std::thread::sleep(Duration::from_millis(200));
        done(only(&cluster, survivor).put_if(KEY, b"gen-3", r2).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"gen-3");
        stop.store(true, Ordering::SeqCst);
    });

    // The member comes back on its data directory with the data.
    cluster.restart(victim);
    assert_eq!(
        only(&cluster, victim).get(KEY).unwrap().0.unwrap().value,
        b"gen-3"
    );
}

#[test]
fn a_watch_on_a_killed_member_ends_and_the_next_one_uses_another_member() {
    let mut cluster = EtcdCluster::start(3);
    // The watched member is a follower, as in the failover test: no election in the way.
    let victim = (0..3).find(|&i| i != cluster.leader()).unwrap();
    let all = cluster.endpoints();
    let mut endpoints = vec![all[victim].clone()];
    endpoints.extend((0..3).filter(|&i| i != victim).map(|i| all[i].clone()));
    let etcd = client(&endpoints);
    let r1 = done(etcd.put_if(KEY, b"gen-1", 0).unwrap());
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let watch = s.spawn(|| etcd.watch(KEY, r1 + 1, &stop, &mut |_| {}));
        std::thread::sleep(Duration::from_millis(300));
        cluster.kill(victim);
        let started = Instant::now();
        while !watch.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the watch did not notice its member died"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        watch.join().unwrap()
    });
    // Either the stream ended cleanly or broke; both let the caller restart.
    if let Err(e) = &result {
        assert!(matches!(e, EtcdError::WatchBroken { .. }), "{e:?}");
        assert!(e.to_string().contains(&all[victim]), "{e}");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            etcd.watch(KEY, r1 + 1, &stop, &mut |kv| {
                let _ = tx.send(kv.value);
            })
        });
        std::thread::sleep(Duration::from_millis(200));
        done(etcd.put_if(KEY, b"gen-2", r1).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"gen-2");
        stop.store(true, Ordering::SeqCst);
    });
}

#[test]
fn with_every_member_down_the_error_names_each_endpoint_the_operation_and_the_key() {
    let mut cluster = EtcdCluster::start(3);
    let endpoints = cluster.endpoints();
    let etcd = client(&endpoints);
    done(etcd.put_if(KEY, b"gen-1", 0).unwrap());
    cluster.stop_all();

    for (op, err) in [
        ("range", etcd.get(KEY).unwrap_err()),
        ("txn", etcd.put_if(KEY, b"x", 5).unwrap_err()),
        (
            "watch",
            etcd.watch(KEY, 1, &AtomicBool::new(false), &mut |_| {})
                .unwrap_err(),
        ),
    ] {
        let EtcdError::AllEndpointsFailed { attempts, .. } = &err else {
            panic!("{op}: expected AllEndpointsFailed, got {err:?}");
        };
        assert_eq!(attempts.len(), 3, "{op}");
        let text = err.to_string();
        assert!(text.contains(op), "{text}");
        assert!(text.contains("/occlum-kms/v1/demo/state"), "{text}");
        for e in &endpoints {
            assert!(text.contains(e.as_str()), "{op}: {e} missing in {text}");
        }
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}

#[test]
fn without_a_quorum_a_linearizable_read_times_out_naming_the_timeout_and_its_knob() {
    let mut cluster = EtcdCluster::start(3);
    let etcd = client(&cluster.endpoints()[..1]).with_timeout_knob("--etcd-timeout");
    done(etcd.put_if(KEY, b"gen-1", 0).unwrap());
    cluster.kill(1);
    cluster.kill(2);

    let started = Instant::now();
    let err = etcd.get(KEY).unwrap_err();
    let took = started.elapsed();
    // Member 0 still runs and holds the data, but a linearizable read needs a quorum: the
    // client must not fall back to a stale (serializable) answer.
    assert!(err.is_timeout(), "{err:?}");
    assert!(took >= TIMEOUT && took < TIMEOUT * 3, "took {took:?}");
    let text = err.to_string();
    assert!(text.contains("timed out after 2s"), "{text}");
    assert!(text.contains("--etcd-timeout"), "{text}");
    assert!(text.contains(&cluster.endpoints()[0]), "{text}");

    // Quorum back: reads succeed again through the same client.
    cluster.restart(1);
    assert_eq!(etcd.get(KEY).unwrap().0.unwrap().value, b"gen-1");
}

#[test]
fn an_endpoint_that_accepts_but_never_answers_times_out_and_the_next_one_answers() {
    let cluster = EtcdCluster::start(3);
    // A listener that accepts connections (the kernel does) and never replies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let etcd = client(&[silent_url.clone(), cluster.endpoints()[1].clone()]);
    let started = Instant::now();
    done(etcd.put_if(KEY, b"gen-1", 0).unwrap());
    assert!(
        started.elapsed() >= TIMEOUT,
        "the silent endpoint was not tried first"
    );
    // The endpoint that answered is tried first from now on.
    let started = Instant::now();
    etcd.get(KEY).unwrap();
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());

    // Alone, the silent endpoint yields a timeout error naming it.
    let err = client(std::slice::from_ref(&silent_url))
        .get(KEY)
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains(&silent_url), "{err}");
    let err = client(std::slice::from_ref(&silent_url))
        .watch(KEY, 1, &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains(&silent_url), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[test]
fn a_request_over_etcds_limit_is_refused_naming_the_limit() {
    let cluster = EtcdCluster::start(3);
    let etcd = client(&cluster.endpoints());
    // The largest record the envelope produces fits etcd's default --max-request-bytes.
    let largest = vec![0x5a; envelope::MAX_RECORD_BYTES];
    done(etcd.put_if(KEY, &largest, 0).unwrap());
    assert_eq!(etcd.get(KEY).unwrap().0.unwrap().value.len(), largest.len());

    let too_large = vec![0x5a; 1_600_000];
    let err = etcd
        .put_if(b"/occlum-kms/v1/demo/big", &too_large, 0)
        .unwrap_err();
    match &err {
        EtcdError::Refused {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert!(message.contains("request is too large"), "{message}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("--max-request-bytes"), "{text}");
    assert!(text.contains("/occlum-kms/v1/demo/big"), "{text}");
    assert!(text.contains("HTTP 400"), "{text}");
}

#[test]
fn malformed_endpoints_are_refused_naming_them() {
    for bad in [
        "127.0.0.1:2379",
        "https://127.0.0.1:2379",
        "http://127.0.0.1",
        "http://127.0.0.1:0",
        "http://127.0.0.1:2379/v3",
        "http://user@127.0.0.1:2379",
        "http://:2379",
    ] {
        let err = Etcd::new(&[bad.to_owned()], TIMEOUT).err().unwrap();
        assert!(matches!(err, EtcdError::Endpoint { .. }), "{bad}: {err:?}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    assert!(Etcd::new(&[], TIMEOUT).is_err());
    assert!(Etcd::new(&["http://127.0.0.1:2379".to_owned()], Duration::ZERO).is_err());
    let ok = Etcd::new(&["http://127.0.0.1:2379/".to_owned()], TIMEOUT).unwrap();
    assert_eq!(ok.endpoints(), vec!["http://127.0.0.1:2379".to_owned()]);
}

/// Compacts the cluster's history up to `revision` (the gateway's /v3/kv/compaction).
fn compact(endpoint: &str, revision: i64) {
    let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
    let mut response = ureq::post(&format!("{endpoint}/v3/kv/compaction"))
        .header("content-type", "application/json")
        .send(body.as_str())
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.body_mut().read_to_string();
}

#[test]
fn etcd_stores_the_sealed_record_and_never_the_secret_or_the_key() {
    let mut cluster = EtcdCluster::start(3);
    let etcd = client(&cluster.endpoints());
    let key = envelope::ClusterKey::generate().unwrap();
    let secret = b"s3cret-that-only-attested-replicas-may-read";
    let plaintext = [
        br#"{"policy":{},"secrets":{"db_password":""#.as_slice(),
        secret,
        br#""}}"#,
    ]
    .concat();
    let record = envelope::seal_state(&key, "demo", 1, 1, &[0; 32], &plaintext).unwrap();
    done(etcd.put_if(KEY, &record, 0).unwrap());
    // Read back through another member: the record, byte for byte, opens to the state.
    let stored = only(&cluster, 2).get(KEY).unwrap().0.unwrap().value;
    assert_eq!(stored, record);
    let opened = envelope::open_state(&key, "demo", &stored).unwrap();
    assert_eq!(opened.plaintext.as_slice(), plaintext.as_slice());

    cluster.stop_all();
    let mut files = 0;
    let mut record_seen = false;
    for member in &cluster.members {
        for path in files_under(&member.data_dir) {
            let bytes = std::fs::read(&path).unwrap();
            files += 1;
            // The control: the sealed record is on disk (so this search finds what is there).
            record_seen |= contains(&bytes, &record[envelope::HEADER_LEN..]);
            assert!(
                !contains(&bytes, secret),
                "secret in clear in {}",
                path.display()
            );
            assert!(
                !contains(&bytes, key.as_bytes()),
                "cluster key in {}",
                path.display()
            );
        }
    }
    assert!(files > 0);
    assert!(
        record_seen,
        "the sealed record was not found in any data file"
    );
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
