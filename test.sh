#!/usr/bin/env bash
# The project's test command (README): formatting, lints, the musl init build, every test.
# Everything in the release profile, once, into ./target: grpcio's C core (~8 min on two cores)
# builds a single time and the tests drive the same binaries build.sh ships.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings

step "no async runtime or reqwest in the attestation core"
if cargo tree -p ratls -e normal --prefix none | grep -E '^(tokio|async-std|reqwest|futures-executor) ' ; then
  echo "ratls must not depend on an async runtime or reqwest" >&2
  exit 1
fi

step "build every binary (host) and init for Occlum (musl PIE)"
cargo build --release --workspace --bins --locked
./init/build-musl.sh

step "shellcheck"
shellcheck ./*.sh .ci/run fuzz/*.sh bench/*.sh init/*.sh tests/*.sh occlum-configs/*.sh

step "cargo test"
cargo test --release --workspace --locked --no-fail-fast

step "end to end: ./build.sh && ./run.sh, the seed's curl commands, client restart"
tests/demo_e2e.sh
