# shellcheck shell=bash
# Shared by the bench scripts that drive kms_bench (kms_ab.sh, metrics_ab.sh, prometheus_kms.sh):
# building the bench, loopback ports, a throwaway Prometheus, and the paired A/B summary.
# Sourced, not run; the caller has `set -euo pipefail` and is at the repository's top.

# Builds every binary and kms_bench (the features test.sh uses, so nothing rebuilds) and prints
# the bench's path. $1 names the calling script in errors.
kms_bench_binary() {
    local features=kms/simulation,init/simulation bench
    cargo build --release --workspace --bins --locked --features "$features" >&2
    bench=$(cargo bench --workspace --locked --features "$features" --bench kms_bench --no-run \
        --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*kms_bench[^"]*\)".*/\1/p' | tail -n 1)
    [ -x "$bench" ] || { echo "$1: could not build the kms_bench binary" >&2; return 1; }
    echo "$bench"
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts Prometheus in DIR (config, data, log) on 127.0.0.1:PROM_PORT, scraping job "kms" at
# 127.0.0.1:METRICS_PORT every second; sets prom_pid. Stop it with stop_prometheus.
start_prometheus() { # DIR METRICS_PORT PROM_PORT
    cat >"$1/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: kms
    static_configs:
      - targets: ["127.0.0.1:$2"]
YAML
    promtool check config "$1/prometheus.yml" >/dev/null
    prometheus --config.file="$1/prometheus.yml" --storage.tsdb.path="$1/data" \
        --web.listen-address="127.0.0.1:$3" >"$1/prometheus.log" 2>&1 &
    prom_pid=$!
}

stop_prometheus() {
    if [ -n "${prom_pid:-}" ]; then
        kill "$prom_pid" 2>/dev/null || true
        wait "$prom_pid" 2>/dev/null || true
        prom_pid=""
    fi
}

# Summarises paired runs: FILE has one line per pair, "rate p99 kms_cpu client_cpu" of A then
# of B. Prints each side's medians and the medians of the per-pair ratios B/A.
ab_summary() { # CLIENTS LABEL_A LABEL_B FILE
    awk -v clients="$1" -v la="$2" -v lb="$3" '
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
    printf "A %s: rate %.0f/s, p99 %.1f ms, KMS %.2f ms, client %.2f ms per attestation (medians)\n", la, median(ra, n), median(pa, n), median(ka, n), median(ca, n)
    printf "B %s: rate %.0f/s, p99 %.1f ms, KMS %.2f ms, client %.2f ms per attestation (medians)\n", lb, median(rb, n), median(pb, n), median(kb, n), median(cb, n)
    printf "KMS CPU per client CPU (medians): A %.3f, B %.3f\n", median(na, n), median(nb, n)
    printf "B/A, median of the pairs: rate %.3f, KMS CPU %.3f, KMS CPU per client CPU %.3f\n", median(rr, n), median(kr, n), median(nr, n)
}' "$4"
}
