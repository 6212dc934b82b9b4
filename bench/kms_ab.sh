#!/usr/bin/env bash
# Paired A/B of two KMS builds under bench/kms_bench's load, for changes smaller than the
# machine's drift: on the 2-core development machine the same binary's CPU per attestation
# moves by +-15% within minutes, so separate runs of A and B cannot show a 5% change. Runs
# alternate A B B A ..., and the report gives each side's medians and the medians of the
# per-pair ratios B/A. Both sides use this checkout's client (init's stack), so the client's
# CPU per attestation measures the machine's speed during the run: the KMS's CPU divided by
# it is the steadiest figure (about +-5% run to run, where the KMS's CPU alone moves +-15%).
# SIMULATED platform.
#
#   bench/kms_ab.sh KMS_A KMS_B [PAIRS (default 6)] [CLIENTS (default 32)] [PER_RUN (default 3000)]
#
# KMS_AB_ARGS passes more kms_bench flags to every run (e.g. "--client-nice 10").
#
# Example: compare HEAD's KMS with an older one built elsewhere:
#   bench/kms_ab.sh /tmp/kms-old target/release/kms 8
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
    sed -n '2,16p' "$0" >&2
    exit 2
fi
a=$1 b=$2 pairs=${3:-6} clients=${4:-32} per_run=${5:-3000}
for bin in "$a" "$b"; do
    [ -x "$bin" ] || { echo "kms_ab: $bin is not an executable KMS binary" >&2; exit 2; }
done

bench=$(cargo bench --workspace --locked --features kms/simulation,init/simulation --bench kms_bench --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*kms_bench[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bench" ] || { echo "kms_ab: could not build the kms_bench binary" >&2; exit 1; }

# One run: prints "rate p99 kms_cpu client_cpu" for the level.
run() {
    # shellcheck disable=SC2086 # KMS_AB_ARGS is a list of flags
    KMS_BIN=$1 "$bench" --per-level "$per_run" --levels "$clients" ${KMS_AB_ARGS:-} 2>/dev/null |
        awk -v c="$clients" '$1 == c { print $3, $5, $6, $8 }'
}

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for i in $(seq 1 "$pairs"); do
    # A B, then B A: a drift that runs through a pair hits both sides alike.
    if [ $((i % 2)) -eq 1 ]; then
        ra=$(run "$a"); rb=$(run "$b")
    else
        rb=$(run "$b"); ra=$(run "$a")
    fi
    if [ -z "$ra" ] || [ -z "$rb" ]; then
        echo "kms_ab: a run produced no result" >&2
        exit 1
    fi
    echo "$ra $rb" >>"$results"
    echo "pair $i: A $ra | B $rb  (rate/s p99_ms kms_cpu_ms client_cpu_ms)"
done

awk -v a="$a" -v b="$b" -v clients="$clients" '
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
    printf "A %s: rate %.0f/s, p99 %.1f ms, KMS %.2f ms, client %.2f ms per attestation (medians)\n", a, median(ra, n), median(pa, n), median(ka, n), median(ca, n)
    printf "B %s: rate %.0f/s, p99 %.1f ms, KMS %.2f ms, client %.2f ms per attestation (medians)\n", b, median(rb, n), median(pb, n), median(kb, n), median(cb, n)
    printf "KMS CPU per client CPU (medians): A %.3f, B %.3f\n", median(na, n), median(nb, n)
    printf "B/A, median of the pairs: rate %.3f, KMS CPU %.3f, KMS CPU per client CPU %.3f\n", median(rr, n), median(kr, n), median(nr, n)
}' "$results"
