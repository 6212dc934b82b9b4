#!/usr/bin/env bash
# Cluster end to end (issue 26), on loopback, SIMULATED platform (sgx-sim; nothing here is
# evidence of SGX hardware): 3 etcd members, 3 KMS replicas in cluster mode (tests/cluster_lib.sh).
# - An empty etcd makes no cluster: no replica is ready and nothing is written until the
#   operator's genesis; then all three are ready (two join through a peer).
# - A storm of host-mode init boots (at least CLUSTER_BOOTS, default 240; CLUSTER_WORKERS at
#   once, default 4), each naming all three replicas, while replica 2 is SIGKILLed for
#   CLUSTER_CHAOS_SECS (default 3) and restarted (from its sealed slot), then etcd member 1 the
#   same: 0 failed boots.
# - A secret changed through replica 1 is served by all three within CLUSTER_PROPAGATION_SECS
#   (default 10).
# - etcd holds no secret in clear or base64; every replica's audit log chain verifies.
# Prints boot latency p50/p99 (all, and during the replica kill) and "N passed, M failed";
# exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTS=${CLUSTER_BOOTS:-240}
WORKERS=${CLUSTER_WORKERS:-4}
PROPAGATION_SECS=${CLUSTER_PROPAGATION_SECS:-10}
CHAOS_SECS=${CLUSTER_CHAOS_SECS:-3}
scratch=$(mktemp -d)
# shellcheck source=tests/cluster_lib.sh
. tests/cluster_lib.sh
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
cleanup() {
  cluster_cleanup
  if [ -n "${KEEP_SCRATCH:-}" ]; then echo "scratch kept: $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

if cluster_material; then ok "./build.sh (demo material) and the simulated PCCS"; else
  fail "./build.sh and the simulated PCCS" "see above"
  finish
  exit 1
fi

etcd_ports
for i in 1 2 3; do start_etcd "$i"; done
all_etcd=1
for i in 1 2 3; do wait_etcd "$i" || all_etcd=0; done
if [ $all_etcd = 1 ]; then ok "3 etcd members healthy"; else
  fail "3 etcd members healthy" "see $scratch/etcd*.log"
  finish
  exit 1
fi

cluster_config
for i in 1 2 3; do start_kms "$i"; done
for i in 1 2 3; do wait_line "kms$i" 'listening on' 60 >/dev/null || true; done

# An empty etcd makes no cluster by itself: nobody is ready, etcd stays empty.
sleep 2
not_ready=0
for i in 1 2 3; do ready "$i" || not_ready=$((not_ready + 1)); done
etcd_dump "$scratch/etcd-before-genesis.bin"
if [ $not_ready = 3 ] && [ ! -s "$scratch/etcd-before-genesis.bin" ]; then
  ok "empty etcd: no replica ready and nothing written before the operator's genesis"
else
  fail "empty etcd: no replica ready before genesis" "$not_ready of 3 not ready; etcd holds $(wc -c <"$scratch/etcd-before-genesis.bin") bytes"
fi

if admin 1 genesis >"$scratch/genesis.out" 2>&1; then ok "kms admin genesis on replica 1"; else
  fail "kms admin genesis" "$(cat "$scratch/genesis.out")"
fi
t0=$SECONDS
all_ready=1
for i in 1 2 3; do wait_ready "$i" "$READY_SECS" || all_ready=0; done
if [ $all_ready = 1 ]; then ok "3 replicas ready $((SECONDS - t0)) s after genesis (2 and 3 joined through a peer)"; else
  fail "3 replicas ready" "see $scratch/kms*.log"
  finish
  exit 1
fi

# The storm, with chaos: replica 2 SIGKILLed for CLUSTER_CHAOS_SECS (default 3) and restarted
# (from its sealed slot); then etcd member 1 the same; then at least BOOTS boots in all.
storm "$WORKERS"
wait_booted 20
kill_start=$(date +%s%N)
stop kms2 KILL
echo "     replica 2 SIGKILLed after $(booted) boots"
sleep "$CHAOS_SECS"
start_kms 2
if wait_ready 2 "$READY_SECS"; then ok "replica 2 restarted and ready again (after $(booted) boots)"; else
  fail "replica 2 restarted and ready again" "see $scratch/kms2.log"
fi
kill_end=$(date +%s%N)
if grep -q 'key-from-slot' "$scratch/audit2.jsonl"; then
  ok "replica 2 took the cluster key from its sealed slot"
else
  fail "replica 2 took the cluster key from its sealed slot" "no key-from-slot record in $scratch/audit2.jsonl"
fi
wait_booted $(($(booted) + 20))
stop etcd1 KILL
echo "     etcd member 1 SIGKILLed after $(booted) boots"
sleep "$CHAOS_SECS"
start_etcd 1
if wait_etcd 1; then ok "etcd member 1 restarted and healthy (after $(booted) boots)"; else
  fail "etcd member 1 restarted" "see $scratch/etcd1.log"
fi
storm_stop $(($(booted) + 20 > BOOTS ? $(booted) + 20 : BOOTS))

total=$(booted)
bad=$(awk '$2 != 0' "$scratch/boots" | wc -l)
if [ "$total" -ge "$BOOTS" ] && [ "$bad" -eq 0 ]; then
  ok "boot storm: $total boots, 0 failed, through a replica kill and an etcd member kill"
else
  first=$(awk '$2 != 0 {print $1; exit}' "$scratch/boots")
  fail "boot storm: 0 failed boots" "$bad of $total failed${first:+; first: $(tail -n 5 "$scratch/boot-$first.log")}"
fi
boot_latency "$kill_start" "$kill_end" | sed 's/^/     /'

# A secret changed through replica 1 is served by all three.
head -c 48 /dev/urandom | base64 -w0 >"$scratch/new-cert"
if admin 1 put-secret --name flask_cert --value-file "$scratch/new-cert" >"$scratch/put.out" 2>&1; then
  ok "put-secret flask_cert through replica 1"
else
  fail "put-secret through replica 1" "$(cat "$scratch/put.out")"
fi
t_put=$(date +%s%N)
n=100000
for i in 1 2 3; do
  served=0
  deadline=$((SECONDS + PROPAGATION_SECS))
  while [ $SECONDS -lt $deadline ]; do
    n=$((n + 1))
    boot "$n" "127.0.0.1:${KMS_PORT[i]}" keep
    if cmp -s "$scratch/boot/$n/etc/flask.crt" "$scratch/new-cert"; then served=1; fi
    rm -rf "${scratch:?}/boot/$n"
    [ $served = 1 ] && break
  done
  if [ $served = 1 ]; then
    ok "replica $i serves the new flask_cert $((($(date +%s%N) - t_put) / 1000000)) ms after the put"
  else
    fail "replica $i serves the new flask_cert within ${PROPAGATION_SECS}s" "see $scratch/kms$i.log"
  fi
done

# etcd holds ciphertext only: no secret's first 32 bytes, raw or base64.
etcd_dump "$scratch/etcd-after.bin"
hex_of() { od -An -tx1 | tr -d ' \n'; }
dump_hex=$(hex_of <"$scratch/etcd-after.bin")
leaks=0
for s in "$DEMO/flask.key" "$DEMO/image_key" "$scratch/new-cert"; do
  for needle in "$(head -c 32 "$s" | hex_of)" "$(base64 -w0 "$s" | head -c 32 | hex_of)"; do
    case $dump_hex in *"$needle"*) leaks=$((leaks + 1)) ;; esac
  done
done
if [ -s "$scratch/etcd-after.bin" ] && [ $leaks = 0 ]; then
  ok "etcd holds $(wc -c <"$scratch/etcd-after.bin") bytes, none of them a secret in clear or base64"
else
  fail "etcd holds no secret in clear" "$leaks matches in $(wc -c <"$scratch/etcd-after.bin") bytes"
fi

for i in 1 2 3; do stop "kms$i"; done
for i in 1 2 3; do
  if "$KMS" audit verify "$scratch/audit$i.jsonl" >"$scratch/verify$i.out" 2>&1; then
    ok "replica $i's audit log chain verifies"
  else
    fail "replica $i's audit log chain" "$(cat "$scratch/verify$i.out")"
  fi
done

finish
