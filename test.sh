#!/usr/bin/env bash
# The project's test command (README): formatting, lints, the musl init build, every test.
# Everything in the release profile, once, into ./target: grpcio's C core (~8 min on two cores)
# builds a single time and the tests drive the same binaries build.sh ships.
set -euo pipefail
cd "$(dirname "$0")"

# The simulated platform is compiled in only with these features (never in the Occlum builds);
# the host binaries the tests drive need it.
SIM_FEATURES=kms/simulation,init/simulation

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
cargo clippy --release --workspace --all-targets --locked --features "$SIM_FEATURES" -- -D warnings

step "no async runtime, network client or device crate in the attestation core"
# ratls is the pure verifier: PCCS fetching (ureq, threads, disk cache) lives in pccs-client,
# the QuoteSource trait in quote-source, so ratls links neither ureq nor occlum-dcap (ioctls),
# nor fileio: callers read collateral files (pccs_client::read_collateral_file), ratls parses.
for features in "" "--features ratls/simulation"; do
  # shellcheck disable=SC2086 # $features is empty or two words, on purpose
  tree=$(cargo tree --locked -p ratls $features -e normal --prefix none)
  if grep -E '^(tokio|async-std|reqwest|futures-executor|ureq|occlum-dcap|fileio) ' <<<"$tree" ; then
    echo "ratls ($features) must not depend on an async runtime, reqwest, ureq, occlum-dcap or fileio" >&2
    exit 1
  fi
done
# grsecret is the GrSecret wire contract alone: no transport, no TLS.
tree=$(cargo tree --locked -p grsecret -e normal --prefix none)
if grep -E '^(grpc-unary|grpcio|rustls|ureq|tokio) ' <<<"$tree" ; then
  echo "grsecret must not depend on a transport or TLS stack" >&2
  exit 1
fi
# test-kit is test support: no package that ships a binary links it (dev-dependencies only).
for pkg in kms init app sgx-sim pccs-client; do
  tree=$(cargo tree --locked -p "$pkg" -e normal,build --prefix none --all-features)
  if grep -E '^test-kit ' <<<"$tree" ; then
    echo "$pkg depends on test-kit outside [dev-dependencies]" >&2
    exit 1
  fi
done
tree=$(cargo tree --locked -p e2e-tests -e normal --prefix none)
grep -qE '^test-kit ' <<<"$tree" ||
  { echo "e2e-tests does not depend on test-kit: the check above would prove nothing" >&2; exit 1; }

step "the Occlum builds contain no simulated-root path"
# kms and init built alone without `simulation` (as build.sh's Occlum branch and
# init/build-musl.sh build them) must not link sgx-sim, the only maker of a simulated root.
for pkg in kms init; do
  if cargo tree --locked -p "$pkg" -e normal --prefix none --target x86_64-unknown-linux-musl | grep -E '^sgx-sim ' ; then
    echo "$pkg without the simulation feature depends on sgx-sim" >&2
    exit 1
  fi
done
# The Occlum init itself: build-musl.sh fails if marker strings of simulated-root code are in
# the binary (and, for --simulation, if they are missing, so the check can see them).
./init/build-musl.sh
./init/build-musl.sh --simulation

step "the Occlum builds contain no host tools"
# Without the `host-tools` feature (the Occlum builds) init links neither tar nor aes-gcm (the
# host-mode image; in Occlum the LibOS mounts the rootfs) and kms has no seal, unseal, gen-* or
# admin (the operator's client; the admin server stays).
# build-musl.sh above checked the Occlum init binary; the KMS is built here as build.sh's Occlum
# branch builds it (no features), checked and run; the host build below must carry both.
for dep in tar aes-gcm; do
  if cargo tree --locked -p init -e normal --prefix none --target x86_64-unknown-linux-musl | grep -E "^$dep " ; then
    echo "init without host-tools depends on $dep" >&2
    exit 1
  fi
  cargo tree --locked -p init -e normal --prefix none --features host-tools | grep -qE "^$dep " ||
    { echo "init with host-tools lacks $dep: the check above would prove nothing" >&2; exit 1; }
done
cargo build --release --workspace --bins --locked
occlum-configs/check-host-tools.sh absent kms "${CARGO_TARGET_DIR:-target}/release/kms" --run

step "build every binary (host, with the simulated platform)"
cargo build --release --workspace --bins --locked --features "$SIM_FEATURES"
occlum-configs/check-host-tools.sh present kms "${CARGO_TARGET_DIR:-target}/release/kms"

step "shellcheck"
shellcheck ./*.sh .ci/run fuzz/*.sh bench/*.sh init/*.sh tests/*.sh occlum-configs/*.sh

step "Kubernetes manifests: YAML syntax and cross-references (offline; no kubectl here)"
python3 deploy/kubernetes/check.py

step "cargo test"
cargo test --release --workspace --locked --no-fail-fast --features "$SIM_FEATURES"

step "end to end: ./build.sh && ./run.sh, the seed's curl commands, client restart"
tests/demo_e2e.sh

step "Prometheus scrapes the KMS during kms_bench (SIMULATED platform)"
bench/prometheus_kms.sh

step "cluster end to end: 3 etcd members, 3 KMS replicas, a boot storm through kills (SIMULATED platform)"
tests/cluster_e2e.sh
