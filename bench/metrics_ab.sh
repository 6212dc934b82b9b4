#!/usr/bin/env bash
# Paired A/B of the metrics endpoint's cost under bench/kms_bench's load: A runs the KMS
# without --metrics-listen, B with it while a real Prometheus scrapes it every second. Same
# binaries, runs alternating A B B A ..., as bench/kms_ab.sh does (read it for why: the
# machine drifts more than the change measured). Reports each side's medians and the medians
# of the per-pair ratios B/A; the KMS's CPU per client CPU is the steadiest figure.
# SIMULATED platform; the KMS in its default configuration; all clients from 127.0.0.1.
#
#   bench/metrics_ab.sh [PAIRS (default 6)] [CLIENTS (default 8)] [PER_RUN (default 1000)]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
pairs=${1:-6} clients=${2:-8} per_run=${3:-1000}
command -v prometheus >/dev/null || { echo "metrics_ab: prometheus not found (apt-get install prometheus)" >&2; exit 1; }

bench=$(kms_bench_binary metrics_ab)
metrics_port=$(free_port)
prom_port=$(free_port)
scratch=$(mktemp -d)
cleanup() {
    stop_prometheus
    rm -rf "$scratch"
}
trap cleanup EXIT
start_prometheus "$scratch" "$metrics_port" "$prom_port"

# One run: prints "rate p99 kms_cpu client_cpu" for the level; extra arguments go to kms_bench.
# A run whose client gave up (a handshake past core's 10 s deadline on a loaded machine) is
# run once more.
run() {
    local out
    for _ in 1 2; do
        out=$("$bench" --per-level "$per_run" --levels "$clients" "$@" 2>/dev/null |
            awk -v c="$clients" '$1 == c { print $3, $5, $6, $8 }') || true
        [ -n "$out" ] && break
        echo "metrics_ab: a run failed; running it again" >&2
    done
    echo "$out"
}
scrapes() {
    curl -sf --get "http://127.0.0.1:$prom_port/api/v1/query" \
        --data-urlencode 'query=sum_over_time(up{job="kms"}[1h])' |
        jq -r '.data.result[0].value[1] // "0"'
}

results=$scratch/results
for i in $(seq 1 "$pairs"); do
    if [ $((i % 2)) -eq 1 ]; then
        ra=$(run); rb=$(run --metrics-listen "127.0.0.1:$metrics_port")
    else
        rb=$(run --metrics-listen "127.0.0.1:$metrics_port"); ra=$(run)
    fi
    if [ -z "$ra" ] || [ -z "$rb" ]; then
        echo "metrics_ab: a run produced no result" >&2
        exit 1
    fi
    echo "$ra $rb" >>"$results"
    echo "pair $i: A $ra | B $rb  (rate/s p99_ms kms_cpu_ms client_cpu_ms)"
done
echo "successful Prometheus scrapes of the B runs: $(scrapes)"

ab_summary "$clients" "no metrics" "metrics + Prometheus" "$results"
