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
# shellcheck source=bench/lib.sh
. bench/lib.sh

if [ $# -lt 2 ]; then
    sed -n '2,16p' "$0" >&2
    exit 2
fi
a=$1 b=$2 pairs=${3:-6} clients=${4:-32} per_run=${5:-3000}
for bin in "$a" "$b"; do
    [ -x "$bin" ] || { echo "kms_ab: $bin is not an executable KMS binary" >&2; exit 2; }
done

bench=$(kms_bench_binary kms_ab)

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

ab_summary "$clients" "$a" "$b" "$results"
