#!/usr/bin/env bash
# init boot-time benchmark: builds the musl init (init/build-musl.sh, which also checks the ELF),
# then runs bench/init_boot.rs: median of >= 20 host-mode boots with 3 secrets against the real
# KMS on loopback in the demo's configuration (the simulated PCCS; the KMS stapling its
# collateral, then not), a per-phase breakdown from init's log lines, init's outbound TCP
# connections per boot (strace), and the reference protocol's cost model (a new RSA-2048 key,
# quote and TLS handshake per secret) for the ratio.
#
# Env: BENCH_RUNS (default 25), E2E_KMS_BIN (else target/release/kms, built if missing).
# Needs strace (connection count).
set -euo pipefail
command -v strace >/dev/null || { echo "init_boot.sh: strace not found (apt-get install strace)" >&2; exit 1; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
init=$("$root/init/build-musl.sh" --simulation | tail -n 1)
export E2E_INIT_BIN="$init"
cd "$root"
exec cargo bench -p e2e-tests --bench init_boot
