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
pairs=${1:-6} clients=${2:-8} per_run=${3:-1000}
features=kms/simulation,init/simulation
command -v prometheus >/dev/null || { echo "metrics_ab: prometheus not found (apt-get install prometheus)" >&2; exit 1; }

cargo build --release --workspace --bins --locked --features "$features" >&2
bench=$(cargo bench --workspace --locked --features "$features" --bench kms_bench --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*kms_bench[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bench" ] || { echo "metrics_ab: could not build the kms_bench binary" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
metrics_port=$(free_port)
prom_port=$(free_port)
scratch=$(mktemp -d)
prom_pid=""
cleanup() {
    if [ -n "$prom_pid" ]; then
        kill "$prom_pid" 2>/dev/null || true
        wait "$prom_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
cat >"$scratch/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: kms
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
YAML
prometheus --config.file="$scratch/prometheus.yml" --storage.tsdb.path="$scratch/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$scratch/prometheus.log" 2>&1 &
prom_pid=$!

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

awk -v clients="$clients" '
function median(arr, n,    i, j, t) {
    for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
    return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}
{
    n++
    ra[n] = $1; pa[n] = $2; ka[n] = $3; ca[n] = $4
    rb[n] = $5; pb[n] = $6; kb[n] = $7; cb[n] = $8
    rr[n] = $5 / $1; kr[n] = $7 / $3
    na[n] = $3 / $4; nb[n] = $7 / $8; nr[n] = nb[n] / na[n]
}
END {
    printf "%d pairs at %d clients\n", n, clients
    printf "A no metrics:            rate %.0f/s, p99 %.1f ms, KMS %.2f ms, client %.2f ms per attestation (medians)\n", median(ra, n), median(pa, n), median(ka, n), median(ca, n)
    printf "B metrics + Prometheus:  rate %.0f/s, p99 %.1f ms, KMS %.2f ms, client %.2f ms per attestation (medians)\n", median(rb, n), median(pb, n), median(kb, n), median(cb, n)
    printf "KMS CPU per client CPU (medians): A %.3f, B %.3f\n", median(na, n), median(nb, n)
    printf "B/A, median of the pairs: rate %.3f, KMS CPU %.3f, KMS CPU per client CPU %.3f\n", median(rr, n), median(kr, n), median(nr, n)
}' "$results"
