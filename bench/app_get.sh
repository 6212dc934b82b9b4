#!/bin/sh
# app benchmark: GET requests/s and latency percentiles (p50/p90/p99/p99.9) over kept-alive
# HTTPS connections, 16 clients by default, against the optimised (bench profile = release)
# app binary on loopback; then a short PUT phase (fsynced SQLite commits) for comparison.
# Goal on the 2-core dev machine: >= 5,000 GET/s with p99 < 10 ms.
#
#   bench/app_get.sh [--clients N] [--seconds S] [--warmup S] [--put-seconds S] [--idle-sockets N]
#   (--idle-sockets 1000: the slowloris case, goal GET p99 < 50 ms)
#   APP_BIN=target/release/app bench/app_get.sh   # benchmark a specific build instead
set -eu
cd "$(dirname "$0")/.."
exec cargo bench -p app --bench get_throughput -- "$@"
