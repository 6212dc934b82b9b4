#!/usr/bin/env bash
# Cluster benchmark (issue 26), SIMULATED platform, loopback, this machine's 2 cores shared by
# everything: 3 etcd members and 3 KMS replicas in cluster mode (tests/cluster_lib.sh), then
# 1. attestations/s against 1 replica and against all 3 (kms_bench --targets, round-robin per
#    attestation), in interleaved pairs (CLUSTER_BENCH_PAIRS, default 3) so drift hits both;
# 2. boot latency p50/p99 of host-mode init boots naming all three replicas (at least
#    CLUSTER_BOOTS, default 400), all boots and those started while replica 2 is SIGKILLed
#    (CLUSTER_CHAOS_SECS, default 5) and restarting.
# On two cores three replicas cannot scale throughput: the numbers show what the cluster costs
# and what a kill does to boots, not a speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${CLUSTER_BENCH_PAIRS:-3}
PER_LEVEL=${CLUSTER_BENCH_PER_LEVEL:-400}
LEVELS=${CLUSTER_BENCH_LEVELS:-8,32}
BOOTS=${CLUSTER_BOOTS:-400}
CHAOS_SECS=${CLUSTER_CHAOS_SECS:-5}
WORKERS=${CLUSTER_WORKERS:-4}
scratch=$(mktemp -d)
# shellcheck source=tests/cluster_lib.sh
. tests/cluster_lib.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap 'cluster_cleanup; rm -rf "$scratch"' EXIT
die() { echo "cluster_bench.sh: $*" >&2; exit 1; }

bench=$(kms_bench_binary cluster_bench.sh)
cluster_material || die "building the demo material failed"
etcd_ports
for i in 1 2 3; do start_etcd "$i"; done
for i in 1 2 3; do wait_etcd "$i" || die "etcd member $i did not start (log: $scratch/etcd$i.log)"; done
cluster_config
for i in 1 2 3; do start_kms "$i"; done
for i in 1 2 3; do wait_line "kms$i" 'listening on' 60 >/dev/null || die "replica $i did not start"; done
admin 1 genesis >"$scratch/genesis.out" 2>&1 || die "genesis: $(cat "$scratch/genesis.out")"
for i in 1 2 3; do wait_ready "$i" "$READY_SECS" || die "replica $i not ready (log: $scratch/kms$i.log)"; done

run_bench() { # TARGETS PIDS
  "$bench" --targets "$1" --target-pids "$2" --platform "$DEMO/platform" \
    --client-identity "$DEMO/client/identity.json" --kms-policy "$scratch/op/kms_policy.json" \
    --levels "$LEVELS" --per-level "$PER_LEVEL" --client-nice 5 2>/dev/null |
    awk '$1 ~ /^[0-9]+$/ {print}'
}
one="127.0.0.1:${KMS_PORT[1]}"
three="127.0.0.1:${KMS_PORT[1]},127.0.0.1:${KMS_PORT[2]},127.0.0.1:${KMS_PORT[3]}"
echo "== attestations/s, 1 replica vs 3 replicas (SIMULATED platform; columns: clients count attest/s p50 p99 KMS-CPU/at bench-CPU/at VmHWM)"
for ((p = 1; p <= PAIRS; p++)); do
  if [ $((p % 2)) = 1 ]; then order="1 3"; else order="3 1"; fi
  for r in $order; do
    if [ "$r" = 1 ]; then
      run_bench "$one" "${pids[kms1]}" | sed "s/^/pair $p, 1 replica : /"
    else
      run_bench "$three" "${pids[kms1]},${pids[kms2]},${pids[kms3]}" | sed "s/^/pair $p, 3 replicas: /"
    fi
  done
done

echo "== host-mode init boots ($WORKERS at once) naming all 3 replicas; replica 2 SIGKILLed for ${CHAOS_SECS}s, then restarted"
storm "$WORKERS"
wait_booted $((BOOTS / 4))
before_kill=$(booted)
kill_start=$(date +%s%N)
stop kms2 KILL
sleep "$CHAOS_SECS"
start_kms 2
wait_ready 2 "$READY_SECS" || die "replica 2 not ready after its restart (log: $scratch/kms2.log)"
kill_end=$(date +%s%N)
storm_stop $(($(booted) + before_kill > BOOTS ? $(booted) + before_kill : BOOTS))
echo "failed boots: $(awk '$2 != 0' "$scratch/boots" | wc -l) of $(booted)"
echo "replica 2 down and restarting for $(((kill_end - kill_start) / 1000000)) ms"
boot_latency "$kill_start" "$kill_end"
