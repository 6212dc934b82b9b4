# shellcheck shell=bash
# Shared by tests/cluster_e2e.sh and bench/cluster_bench.sh: a KMS cluster on loopback, SIMULATED
# platform (sgx-sim; nothing here is evidence of SGX hardware). Three etcd members (Debian's
# etcd-server, started here on free ports), three KMS replicas in cluster mode, one operator key
# pinned in the measured cluster.json, and host-mode init boots that name all three replicas.
# Sourced, not run: the caller has `set -euo pipefail`, is at the repository's top and has set
# `scratch` to an empty directory; cluster_cleanup kills everything this started.

RELEASE=${CARGO_TARGET_DIR:-$PWD/target}/release
KMS=$RELEASE/kms
SIM=$RELEASE/sgx-sim
MUSL_INIT=${CARGO_TARGET_DIR:-$PWD/target}/musl-simulation/x86_64-unknown-linux-musl/release/init
# shellcheck disable=SC2154 # scratch: set by the caller, as said above.
DEMO=$scratch/demo
# shellcheck disable=SC2034 # used by the callers.
READY_SECS=${CLUSTER_READY_SECS:-60}
declare -A pids=()
declare -a ETCD_CLIENT ETCD_PEER KMS_PORT ADMIN_PORT HEALTH_PORT
ETCD_URLS=""
ETCD_INITIAL=""
PCCS_URL=""

for tool in etcd curl jq python3; do
  command -v "$tool" >/dev/null || { echo "cluster_lib.sh: $tool not found (.ci/run installs it)" >&2; exit 1; }
done

cluster_cleanup() {
  local name
  for name in "${STORM_PIDS[@]}"; do kill -KILL "$name" 2>/dev/null || true; done
  for name in "${!pids[@]}"; do kill -KILL "${pids[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# spawn NAME COMMAND...: COMMAND in the background, output to $scratch/NAME.log.
spawn() {
  local name=$1
  shift
  "$@" >"$scratch/$name.log" 2>&1 &
  pids[$name]=$!
}

# stop NAME [SIGNAL]: signals NAME (TERM by default) and reaps it.
stop() {
  local pid=${pids[$1]:-}
  [ -n "$pid" ] || return 0
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "pids[$1]"
}

# wait_line NAME PATTERN SECS: prints the first line of NAME's log matching PATTERN.
wait_line() {
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    if grep -m1 "$2" "$scratch/$1.log" 2>/dev/null; then return 0; fi
    kill -0 "${pids[$1]}" 2>/dev/null || { tail -n 20 "$scratch/$1.log" >&2; return 1; }
    sleep 0.1
  done
  return 1
}

# The demo's material (simulated platform, KMS policy and secrets, the client's sealed image)
# from ./build.sh into $DEMO, and the simulated PCCS.
cluster_material() {
  DEMO_DIR=$DEMO FORCE_HOST=1 ./build.sh >"$scratch/build.log" 2>&1 || { tail -n 30 "$scratch/build.log" >&2; return 1; }
  spawn pccs "$SIM" pccs "$DEMO/platform" --listen 127.0.0.1:0
  PCCS_URL="http://$(wait_line pccs 'listening on ' 30 | awk '{print $NF}')"
}

etcd_ports() {
  local i
  for i in 1 2 3; do
    ETCD_CLIENT[i]=$(free_port)
    ETCD_PEER[i]=$(free_port)
    ETCD_INITIAL+="${ETCD_INITIAL:+,}e$i=http://127.0.0.1:${ETCD_PEER[i]}"
    ETCD_URLS+="${ETCD_URLS:+,}http://127.0.0.1:${ETCD_CLIENT[i]}"
  done
}

# start_etcd I: member I (again, with its data, after a kill).
start_etcd() {
  local i=$1
  spawn "etcd$i" etcd --name "e$i" --data-dir "$scratch/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
    --initial-cluster "$ETCD_INITIAL" --initial-cluster-state new --initial-cluster-token cluster-e2e
}

etcd_healthy() { # I
  curl -sf --max-time 2 "http://127.0.0.1:${ETCD_CLIENT[$1]}/health" | grep -q '"health":"true"'
}

wait_etcd() { # I
  local deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ]; do etcd_healthy "$1" && return 0; sleep 0.2; done
  return 1
}

# The operator alice (key in $scratch/op), the measured cluster.json pinning her, the policy her
# CLI holds the KMS enclave to (init's, from the client's config), and per-replica ports and seal
# keys (each replica stands for another CPU).
cluster_config() {
  local entry i
  mkdir -p "$scratch/op"
  entry=$("$KMS" admin keygen --name alice --out-cert "$scratch/op/alice.crt" --out-key "$scratch/op/alice.key" 2>"$scratch/op/keygen.log")
  jq -n --argjson op "$entry" \
    '{cluster_id: "e2e", operators: [$op], replica_policy: "same-enclave", max_stale_secs: 3600}' \
    >"$DEMO/kms/cluster.json"
  jq .ra_config "$DEMO/client/etc/init_ra_conf.json" >"$scratch/op/kms_policy.json"
  for i in 1 2 3; do
    KMS_PORT[i]=$(free_port)
    ADMIN_PORT[i]=$(free_port)
    HEALTH_PORT[i]=$(free_port)
    "$KMS" gen-seal-key --out "$scratch/seal$i.key"
  done
}

peers_of() { # I: the other replicas' main ports
  local j out=""
  for j in 1 2 3; do [ "$j" = "$1" ] || out+="${out:+,}127.0.0.1:${KMS_PORT[j]}"; done
  echo "$out"
}

# start_kms I: replica I, in cluster mode (again, from its sealed slot, after a kill).
start_kms() {
  local i=$1
  spawn "kms$i" "$KMS" serve --listen "127.0.0.1:${KMS_PORT[i]}" \
    --ra-config "$DEMO/kms/dynamic_config.json" --secrets "$DEMO/kms/secret_config.json" \
    --seal-key-file "$scratch/seal$i.key" \
    --sim-platform "$DEMO/platform" --sim-identity "$DEMO/kms/identity.json" --pccs-url "$PCCS_URL" \
    --admin-listen "127.0.0.1:${ADMIN_PORT[i]}" --health-listen "127.0.0.1:${HEALTH_PORT[i]}" \
    --cluster "$DEMO/kms/cluster.json" --cluster-slot "$scratch/slot$i" \
    --etcd "$ETCD_URLS" --peers "$(peers_of "$i")" --audit-log "$scratch/audit$i.jsonl"
}

ready() { # I
  curl -sf --max-time 2 "http://127.0.0.1:${HEALTH_PORT[$1]}/readyz" >/dev/null
}

wait_ready() { # I SECS
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do ready "$1" && return 0; sleep 0.2; done
  return 1
}

# admin I OP [ARGS...]: alice's `kms admin OP` against replica I.
admin() {
  local i=$1 op=$2
  shift 2
  "$KMS" admin "$op" --kms "127.0.0.1:${ADMIN_PORT[i]}" --cert "$scratch/op/alice.crt" \
    --key "$scratch/op/alice.key" --ra-config "$scratch/op/kms_policy.json" \
    --sim-platform "$DEMO/platform" --pccs-url "$PCCS_URL" "$@"
}

# etcd_dump FILE: every value under /occlum-kms/, raw bytes concatenated.
etcd_dump() {
  local prefix end
  prefix=$(printf '/occlum-kms/' | base64 -w0)
  end=$(printf '/occlum-kms0' | base64 -w0)
  curl -sf --max-time 5 -X POST "http://127.0.0.1:${ETCD_CLIENT[1]}/v3/kv/range" \
    -d "{\"key\":\"$prefix\",\"range_end\":\"$end\"}" | jq -r '.kvs[]?.value' | while read -r v; do
    printf '%s' "$v" | base64 -d
  done >"$1"
}

# boot N ADDRS [keep]: one host-mode init boot; appends "N rc start_ns end_ns" to
# $scratch/boots (to $scratch/probes with keep, which also keeps the unpacked rootfs).
boot() {
  local n=$1 addrs=$2 keep=${3:-} rootfs=$scratch/boot/$1 t1 t2 rc=0
  mkdir -p "$scratch/boot"
  t1=$(date +%s%N)
  "$MUSL_INIT" host --config-dir "$DEMO/client" --sim-platform "$DEMO/platform" \
    --sim-identity "$DEMO/client/identity.json" --image "$DEMO/client/rootfs.img" \
    --rootfs "$rootfs" --pccs-url "$PCCS_URL" --kms-server "$addrs" \
    >"$scratch/boot-$n.log" 2>&1 || rc=$?
  t2=$(date +%s%N)
  if [ -n "$keep" ]; then echo "$n $rc $t1 $t2" >>"$scratch/probes"; else echo "$n $rc $t1 $t2" >>"$scratch/boots"; fi
  if [ $rc = 0 ] && [ -z "$keep" ]; then rm -rf "$rootfs" "$scratch/boot-$n.log"; fi
  return 0
}

# addrs_for N: all three replicas, starting at a different one per boot, as a Service spreads.
addrs_for() {
  local k=$(($1 % 3)) out="" j
  for j in 0 1 2; do out+="${out:+,}127.0.0.1:${KMS_PORT[$(((k + j) % 3 + 1))]}"; done
  echo "$out"
}

# storm WORKERS: starts WORKERS background loops of boots that run until storm_stop. Progress:
# booted. (Not a bare `wait` to end it: that would wait for the servers too.)
STORM_PIDS=()
storm() {
  local w
  : >"$scratch/boots"
  rm -f "$scratch/storm.stop"
  STORM_PIDS=()
  for ((w = 0; w < $1; w++)); do
    (
      n=$w
      while [ ! -e "$scratch/storm.stop" ]; do
        boot "$n" "$(addrs_for "$n")"
        n=$((n + $1))
      done
    ) &
    STORM_PIDS+=($!)
  done
}

# storm_stop MIN_BOOTS: lets the storm reach MIN_BOOTS boots, then ends it.
storm_stop() {
  local p
  wait_booted "$1"
  touch "$scratch/storm.stop"
  for p in "${STORM_PIDS[@]}"; do wait "$p" || true; done
  STORM_PIDS=()
}

booted() { wc -l <"$scratch/boots"; }
wait_booted() { # COUNT
  while [ "$(booted)" -lt "$1" ]; do sleep 0.05; done
}

# boot_latency FROM_NS TO_NS: p50/p99 (ms) of the successful boots, all and those that started
# between FROM_NS and TO_NS.
boot_latency() {
  awk -v ks="$1" -v ke="$2" '
function pct(a, n, p,   i, j, t) {
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return a[int((n - 1) * p) + 1]
}
$2 == 0 { ms = ($4 - $3) / 1e6; all[++n] = ms; if ($3 >= ks && $3 <= ke) { kw[++m] = ms } }
END {
  printf "boot latency, all %d boots: p50 %.0f ms, p99 %.0f ms\n", n, pct(all, n, 0.5), pct(all, n, 0.99)
  if (m > 0) printf "boot latency, %d boots started during the replica kill: p50 %.0f ms, p99 %.0f ms\n", m, pct(kw, m, 0.5), pct(kw, m, 0.99)
}' "$scratch/boots"
}
