#!/usr/bin/env bash
# A real Prometheus scrapes the KMS while kms_bench loads it, then the KMS's counters are read
# back through Prometheus's HTTP query API and checked against the bench's own count:
# kms_attestations_total{result="ok"} equals the attestations kms_bench made (each presents a
# new certificate, so each is one verification), releases are three per attestation, the
# latency histogram counted each verification, collateral came from the simulated PCCS and was
# then served from the cache, and promtool accepts the exposition. SIMULATED platform.
#
#   bench/prometheus_kms.sh [PER_LEVEL (default 200)] [LEVELS (default 1,8)]
#
# Uses /usr/bin/prometheus and promtool (Debian package prometheus), curl and jq, the release
# binaries (kms, sgx-sim; built if needed) and the kms_bench binary. Everything listens on
# 127.0.0.1 ports chosen free at start; Prometheus keeps its data in a temporary directory.
# Prints "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
per_level=${1:-200} levels=${2:-1,8}

for tool in prometheus promtool curl jq python3; do
    command -v "$tool" >/dev/null || { echo "prometheus_kms: $tool not found (apt-get install prometheus curl jq)" >&2; exit 1; }
done

bench=$(kms_bench_binary prometheus_kms)
metrics_port=$(free_port)
prom_port=$(free_port)
scratch=$(mktemp -d)
cleanup() {
    stop_prometheus
    rm -rf "$scratch"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

start_prometheus "$scratch" "$metrics_port" "$prom_port"
api="http://127.0.0.1:$prom_port"
for _ in $(seq 1 100); do
    curl -sf "$api/-/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
if curl -sf "$api/-/ready" >/dev/null 2>&1; then ok "prometheus ready on 127.0.0.1:$prom_port"; else
    fail "prometheus ready" "$(tail -n 5 "$scratch/prometheus.log")"
    echo "$passed passed, $failed failed"
    exit 1
fi

# The bench keeps the KMS up for 4 s after its last attestation, so the last scrapes see
# everything; meanwhile this script takes one scrape of its own for promtool.
# Prometheus syncs its targets a few seconds after it is ready (the discovery reload interval,
# 5 s) and then scrapes on its own schedule, while kms_bench at CPU speed takes about a second:
# wait until it has tried the target once (the KMS is not up yet, so that scrape fails), so
# the scrapes during and after the bench (--linger) are certain to happen.
for _ in $(seq 1 150); do
    last=$(curl -sf "$api/api/v1/targets" |
        jq -r '[.data.activeTargets[] | select(.labels.job == "kms") | .lastScrape][0] // "none"')
    case "$last" in none | 0001-*) sleep 0.1 ;; *) break ;; esac
done
case "$last" in
    none | 0001-*) fail "prometheus scrapes the target" "no scrape attempt within 15 s (last: $last)" ;;
    *) ok "prometheus tried the KMS target (last scrape $last)" ;;
esac

"$bench" --per-level "$per_level" --levels "$levels" --sim-pccs \
    --metrics-listen "127.0.0.1:$metrics_port" --linger 4 >"$scratch/bench.out" 2>"$scratch/bench.err" &
bench_pid=$!
until grep -q '^kms_bench: total attestations' "$scratch/bench.out" 2>/dev/null; do
    kill -0 "$bench_pid" 2>/dev/null || break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$metrics_port/metrics" -o "$scratch/scraped.txt" || true
if wait "$bench_pid"; then ok "kms_bench ran (levels $levels, $per_level attestations each)"; else
    fail "kms_bench" "$(tail -n 5 "$scratch/bench.err")"
fi
sed -n '/^ *clients/,$p' "$scratch/bench.out"
total=$(sed -n 's/^kms_bench: total attestations \([0-9]*\)$/\1/p' "$scratch/bench.out")
total=${total:-0}

if promtool check metrics <"$scratch/scraped.txt" >"$scratch/promtool.out" 2>&1 && [ -s "$scratch/scraped.txt" ]; then
    ok "promtool check metrics accepts the KMS's exposition"
else
    fail "promtool check metrics" "$(head -n 5 "$scratch/promtool.out")"
fi

# query EXPR: the value of an instant query's first sample, or "none". The KMS has stopped by
# now (its series are stale), so every expression looks back with max_over_time.
query() {
    curl -sf --get "$api/api/v1/query" --data-urlencode "query=$1" |
        jq -r 'if .status == "success" and (.data.result | length) > 0 then .data.result[0].value[1] else "none" end'
}
expect() { # NAME EXPR EXPECTED
    local got
    got=$(query "$2")
    if [ "$got" = "$3" ]; then ok "$1 = $3"; else fail "$1" "expected $3, Prometheus has $got ($2)"; fi
}
expect_positive() { # NAME EXPR
    local got
    got=$(query "$2")
    if [ "$got" != none ] && awk -v v="$got" 'BEGIN { exit !(v > 0) }'; then ok "$1 = $got > 0"; else
        fail "$1" "expected > 0, Prometheus has $got ($2)"
    fi
}

w='[10m]'
expect "scrapes of the KMS succeeded (max up)" "max_over_time(up{job=\"kms\"}$w)" 1
expect_positive "kms_attestations_total (all results)" "max_over_time(sum(kms_attestations_total)[10m:1s])"
expect "kms_attestations_total{result=\"ok\"} = kms_bench's attestations" \
    "max_over_time(kms_attestations_total{result=\"ok\",check=\"none\"}$w)" "$total"
expect "kms_attestations_total{result=\"rejected\"} (none refused)" \
    "max_over_time(sum(kms_attestations_total{result=\"rejected\"})[10m:1s])" 0
expect "kms_releases_total{result=\"released\"} = 3 per attestation" \
    "max_over_time(kms_releases_total{result=\"released\"}$w)" "$((3 * total))"
expect "kms_attestation_duration_seconds_count = attestations" \
    "max_over_time(kms_attestation_duration_seconds_count$w)" "$total"
expect_positive "kms_collateral_fetches_total (from the simulated PCCS)" \
    "max_over_time(kms_collateral_fetches_total$w)"
expect_positive "kms_collateral_cache_hits_total" "max_over_time(kms_collateral_cache_hits_total$w)"
expect "kms_collateral_fetch_failures_total" "max_over_time(kms_collateral_fetch_failures_total$w)" 0
expect "kms_state_generation" "max_over_time(kms_state_generation$w)" 1

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
