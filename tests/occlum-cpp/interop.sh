#!/usr/bin/env bash
# Interop with Occlum's real C++ grpc_ratls, both directions, on loopback, with the SIMULATED SGX
# platform. Not run by CI or test.sh: the C++ build (abseil, BoringSSL, gRPC 1.38) takes 15-30
# minutes on 2 cores. See README, "Compatibility with Occlum's C++ grpc_ratls".
#
#   tests/occlum-cpp/interop.sh [build|run|all] [options]     (default: all)
#
# build: Occlum's gRPC 1.38 patch (0001-Add-Occlum-SGX-tls-function.patch), applied unmodified to
#   gRPC 1.38.0 as the crates.io package grpcio-sys 0.9.1 ships it (+ BoringSSL 688fc5c from the
#   crates.io package boringssl-src 0.3.0; protobuf, zlib and cJSON from Debian), built the way
#   Occlum's ra_tls/build_and_install.sh builds it (glibc branch), then its example client and
#   server. The only replaced layer is libocclum_dcap.so (/dev/sgx ioctls in Occlum): here
#   tests/occlum-cpp/shim, the same C API backed by sgx-sim (quotes) and ratls (verification
#   under the simulated root). Nothing of Occlum or gRPC is copied into this repository.
# run: the scenarios below against this project's kms and init (host mode), counting
#   "ok"/"FAIL" lines; exits non-zero on any failure.
#
# Options:
#   --occlum-repo PATH   a git clone (or bare mirror) of occlum/occlum holding commit
#                        $OCCLUM_COMMIT (default 690d5dbf); required for build
#   --grpcio-sys PATH    the unpacked grpcio-sys-0.9.1+1.38.0 crate (default: cargo's registry;
#                        fetched with `cargo fetch` when absent)
#   --boringssl-src PATH the unpacked boringssl-src-0.3.0+688fc5c crate (same default)
#   --work DIR           build and scenario directory (default: target/occlum-cpp)
#   --bin DIR            where kms, init and sgx-sim are (default: target/release; build them with
#                        cargo build --release --workspace --features kms/simulation,init/simulation)
#   --jobs N             make -j (default 2)
#
# Debian packages: build-essential cmake git protobuf-compiler libprotobuf-dev libprotoc-dev
# libcjson-dev zlib1g-dev openssl ca-certificates python3; and Rust (cargo).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/occlum-cpp
OCCLUM_COMMIT=${OCCLUM_COMMIT:-690d5dbf}
STAGE=all
OCCLUM_REPO=
GRPCIO_SYS=
BORINGSSL_SRC=
WORK=$ROOT/target/occlum-cpp
BIN=$ROOT/target/release
JOBS=2

while [ $# -gt 0 ]; do
  case "$1" in
    build | run | all) STAGE=$1 ;;
    --occlum-repo) OCCLUM_REPO=$2; shift ;;
    --grpcio-sys) GRPCIO_SYS=$2; shift ;;
    --boringssl-src) BORINGSSL_SRC=$2; shift ;;
    --work) WORK=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --jobs) JOBS=$2; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "interop.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SRC=$WORK/grpc-src
PREFIX=$WORK/install
SHIM_TARGET=$WORK/shim-target
SHIM_LIB=$SHIM_TARGET/release
EXAMPLES=$SRC/examples/cpp/ratls/build

die() { echo "interop.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

# ---------------------------------------------------------------------------------------------
# build

need() {
  local missing=()
  for tool in cmake g++ make git protoc cargo openssl python3 patch; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  for header in /usr/include/cjson/cJSON.h /usr/include/google/protobuf/message.h /usr/include/zlib.h /etc/ssl/certs/ca-certificates.crt; do
    [ -f "$header" ] || missing+=("$header")
  done
  [ ${#missing[@]} = 0 ] || die "missing: ${missing[*]} (apt-get install build-essential cmake git protobuf-compiler libprotobuf-dev libprotoc-dev libcjson-dev zlib1g-dev openssl ca-certificates python3; Rust from rustup)"
}

# crate_dir NAME-VERSION: the unpacked crate in cargo's registry, fetched if absent.
crate_dir() {
  local name=$1 found
  found=$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src -mindepth 2 -maxdepth 2 -name "$name" 2>/dev/null | head -n 1 || true)
  if [ -z "$found" ]; then
    step "fetching the crates.io packages grpcio-sys 0.9.1 and boringssl-src 0.3.0 (cargo fetch)"
    local tmp=$WORK/fetch
    mkdir -p "$tmp/src"
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ngrpcio-sys = "=0.9.1"\nboringssl-src = "=0.3.0"\n' > "$tmp/Cargo.toml"
    : > "$tmp/src/lib.rs"
    (cd "$tmp" && cargo fetch -q)
    found=$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src -mindepth 2 -maxdepth 2 -name "$name" 2>/dev/null | head -n 1 || true)
  fi
  [ -n "$found" ] || die "crate $name not found in cargo's registry"
  echo "$found"
}

occlum_file() { git -C "$OCCLUM_REPO" show "$OCCLUM_COMMIT:$1"; }

prepare_sources() {
  [ -f "$SRC/.prepared" ] && return 0
  [ -n "$OCCLUM_REPO" ] || die "--occlum-repo PATH is required (a clone of github.com/occlum/occlum)"
  git -C "$OCCLUM_REPO" cat-file -e "$OCCLUM_COMMIT^{commit}" 2>/dev/null \
    || die "$OCCLUM_REPO does not hold Occlum commit $OCCLUM_COMMIT"
  local grpcio boringssl ra=tools/toolchains/grpc_ratls/ra_tls
  grpcio=${GRPCIO_SYS:-$(crate_dir grpcio-sys-0.9.1+1.38.0)}
  boringssl=${BORINGSSL_SRC:-$(crate_dir boringssl-src-0.3.0+688fc5c)}
  [ -f "$grpcio/grpc/CMakeLists.txt" ] || die "$grpcio/grpc/CMakeLists.txt missing (--grpcio-sys)"
  [ -f "$boringssl/boringssl/CMakeLists.txt" ] || die "$boringssl/boringssl/CMakeLists.txt missing (--boringssl-src)"
  step "gRPC 1.38.0 from $grpcio, BoringSSL from $boringssl, Occlum's patches from $OCCLUM_REPO@$OCCLUM_COMMIT"
  rm -rf "$SRC"
  cp -a "$grpcio/grpc" "$SRC"
  chmod -R u+w "$SRC"
  cp -a "$boringssl/boringssl" "$SRC/third_party/boringssl-with-bazel"
  occlum_file "$ra/0001-Add-Occlum-SGX-tls-function.patch" > "$WORK/occlum-grpc.patch"
  occlum_file "$ra/0001-Fixes-build-with-glibc-2.34.patch" > "$WORK/occlum-abseil.patch"
  (cd "$SRC" && patch -p1 --quiet < "$WORK/occlum-grpc.patch")
  (cd "$SRC/third_party/abseil-cpp" && patch -p1 --quiet < "$WORK/occlum-abseil.patch")
  # The examples' CMakeLists includes gRPC's examples/cpp/cmake/common.cmake, not in grpcio-sys.
  mkdir -p "$SRC/examples/cpp/cmake"
  cp "$HERE/common.cmake" "$SRC/examples/cpp/cmake/common.cmake"
  # gRPC's install copies etc/roots.pem (its default roots), which grpcio-sys does not ship;
  # RA-TLS never uses it (Occlum's credentials skip certificate-chain verification).
  mkdir -p "$SRC/etc"
  [ -f "$SRC/etc/roots.pem" ] || cp /etc/ssl/certs/ca-certificates.crt "$SRC/etc/roots.pem"
  mkdir -p "$WORK/occlum-dcap-inc"
  occlum_file tools/toolchains/dcap_lib/inc/occlum_dcap.h > "$WORK/occlum-dcap-inc/occlum_dcap.h"
  touch "$SRC/.prepared"
}

build_shim() {
  step "libocclum_dcap.so: the SIMULATED dcap shim (tests/occlum-cpp/shim, sgx-sim + ratls)"
  # The project's lock file pins the shim's dependencies to the versions the project uses.
  [ -f "$HERE/shim/Cargo.lock" ] || cp "$ROOT/Cargo.lock" "$HERE/shim/Cargo.lock"
  (cd "$HERE/shim" && CARGO_TARGET_DIR=$SHIM_TARGET cargo build --release -j "$JOBS" -q)
  [ -f "$SHIM_LIB/libocclum_dcap.so" ] || die "the shim did not build"
}

build_grpc() {
  local cflags="-I$HERE/shim/include -I$WORK/occlum-dcap-inc"
  if [ ! -f "$WORK/.abseil-installed" ]; then
    step "abseil (as build_and_install.sh: C++11, PIC, Release)"
    rm -rf "$SRC/third_party/abseil-cpp/build"
    mkdir -p "$SRC/third_party/abseil-cpp/build"
    (cd "$SRC/third_party/abseil-cpp/build" \
      && cmake -DCMAKE_CXX_STANDARD=11 -DCMAKE_POSITION_INDEPENDENT_CODE=TRUE \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc .. >"$WORK/abseil.log" 2>&1 \
      && make -j "$JOBS" >>"$WORK/abseil.log" 2>&1 && make install >>"$WORK/abseil.log" 2>&1) \
      || die "abseil failed (log: $WORK/abseil.log)"
    touch "$WORK/.abseil-installed"
  fi
  if [ ! -f "$WORK/.grpc-installed" ]; then
    step "gRPC 1.38 with Occlum's patch (DEFINE_SGX_RA_TLS_OCCLUM_BACKEND=ON; log: $WORK/grpc.log)"
    # build_and_install.sh's flags, plus: protobuf and zlib from Debian (grpcio-sys vendors
    # neither), PIC (its static libraries go into the examples' shared libraries), the SGX SDK
    # and occlum_dcap.h include paths (the patch hard-codes /opt/intel/sgxsdk and /opt/occlum),
    # the shim's directory for -locclum_dcap (build_and_install.sh copies Occlum's library into
    # /usr/local/lib instead; gRPC's check_epollexclusive links it), and no plugins for
    # languages the test does not use.
    mkdir -p "$SRC/build"
    (cd "$SRC/build" \
      && cmake -DgRPC_INSTALL=ON -DgRPC_ABSL_PROVIDER=package -DgRPC_BUILD_TESTS=OFF \
        -DgRPC_BUILD_CSHARP_EXT=OFF -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF \
        -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF \
        -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF \
        -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF \
        -DDEFINE_SGX_RA_TLS_OCCLUM_BACKEND=ON \
        -DgRPC_PROTOBUF_PROVIDER=package -DgRPC_PROTOBUF_PACKAGE_TYPE=MODULE \
        -DgRPC_ZLIB_PROVIDER=package -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
        -DCMAKE_CXX_FLAGS="$cflags" -DCMAKE_C_FLAGS="$cflags" \
        -DCMAKE_EXE_LINKER_FLAGS="-L$SHIM_LIB" -DCMAKE_SHARED_LINKER_FLAGS="-L$SHIM_LIB" \
        -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc \
        -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$PREFIX" .. >"$WORK/grpc.log" 2>&1 \
      && make -j "$JOBS" >>"$WORK/grpc.log" 2>&1 && make install >>"$WORK/grpc.log" 2>&1) \
      || die "gRPC failed (log: $WORK/grpc.log)"
    touch "$WORK/.grpc-installed"
  fi
  step "Occlum's example client and server (examples/cpp/ratls; log: $WORK/examples.log)"
  rm -rf "$EXAMPLES"
  mkdir -p "$EXAMPLES"
  (cd "$EXAMPLES" \
    && cmake -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc \
      -DCMAKE_SHARED_LINKER_FLAGS="-L$SHIM_LIB" -DCMAKE_EXE_LINKER_FLAGS="-L$SHIM_LIB" \
      .. >"$WORK/examples.log" 2>&1 \
    && make -j "$JOBS" >>"$WORK/examples.log" 2>&1) \
    || die "the examples failed (log: $WORK/examples.log)"
  for f in client server libgrpc_ratls_client.so libgrpc_ratls_server.so libhw_grpc_proto.so; do
    [ -f "$EXAMPLES/$f" ] || die "$EXAMPLES/$f was not built"
  done
}

build_all() {
  need
  prepare_sources
  build_shim
  build_grpc
  step "built: $EXAMPLES/client, $EXAMPLES/server"
}

# ---------------------------------------------------------------------------------------------
# run

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  for pid in "${PIDS[@]:-}"; do
    if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for LOG PATTERN PID: until LOG has PATTERN (60 s), or PID died.
wait_for() {
  local log=$1 pattern=$2 pid=$3 deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    grep -q -- "$pattern" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "process $pid exited (log: $log)"; }
    sleep 0.2
  done
  die "'$pattern' did not appear in $log within 60 s"
}

# policy OUT IDENTITY...: an Occlum dynamic_config.json admitting exactly these sgx-sim identities.
policy() {
  local out=$1
  shift
  python3 - "$out" "$@" <<'EOF'
import json, sys
entries = []
for path in sys.argv[2:]:
    i = json.load(open(path))
    e = {"name": i["name"]} if i.get("name") else {}
    e.update({k: i[k] for k in ("mr_enclave", "mr_signer", "isv_prod_id", "isv_svn", "config_svn", "debuggable")})
    entries.append(e)
json.dump({"verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
           "verify_isv_svn": "on", "verify_config_svn": "on", "verify_enclave_debuggable": "on",
           "sgx_mrs": entries}, open(sys.argv[1], "w"), indent=4)
EOF
}

# secrets_json OUT NAME=FILE...: {"NAME": "<base64 of FILE>"}, as Occlum's secret_config.json.
secrets_json() {
  local out=$1
  shift
  python3 - "$out" "$@" <<'EOF'
import base64, json, sys
json.dump({kv.split("=", 1)[0]: base64.b64encode(open(kv.split("=", 1)[1], "rb").read()).decode()
           for kv in sys.argv[2:]}, open(sys.argv[1], "w"), indent=4)
EOF
  chmod 600 "$out"
}

# cpp_client DIR IDENTITY ADDR NAME OUT: Occlum's client in DIR (its dynamic_config.json) as
# the SIMULATED enclave IDENTITY; prints its exit status; output in DIR/NAME.log.
cpp_client() {
  local dir=$1 identity=$2 addr=$3 name=$4 out=$5 rc=0
  (cd "$dir" && OCCLUM_DCAP_SIM_PLATFORM=$S/platform OCCLUM_DCAP_SIM_IDENTITY=$identity \
    LD_LIBRARY_PATH=$EXAMPLES:$SHIM_LIB timeout 60 "$EXAMPLES/client" "$addr" "$name" "$out") \
    >"$dir/$name.log" 2>&1 || rc=$?
  echo "$rc"
}

# same_file NAME EXPECTED ACTUAL
same_file() {
  if [ -f "$3" ] && cmp -s "$2" "$3"; then ok "$1 ($(stat -c %s "$3") bytes, cmp identical)"
  elif [ -f "$3" ]; then fail "$1" "$(cmp "$2" "$3" 2>&1)"
  else fail "$1" "$3 not written"; fi
}

# audit_has LOG PYTHON-EXPR: some record r of the KMS audit log satisfies the expression.
audit_has() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if any(eval(sys.argv[2], {"json": json}, {"r": r}) for r in recs) else 1)
EOF
}

# pem_len ADDR: bytes of PEM of the certificate the server at ADDR presents.
pem_len() {
  openssl s_client -connect "$1" -servername RATLS -showcerts </dev/null 2>/dev/null \
    | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' | wc -c
}

run_all() {
  for tool in kms init sgx-sim; do
    [ -x "$BIN/$tool" ] || die "$BIN/$tool missing: cargo build --release --workspace --features kms/simulation,init/simulation"
  done
  for f in client server; do
    [ -x "$EXAMPLES/$f" ] || die "$EXAMPLES/$f missing: run tests/occlum-cpp/interop.sh build first"
  done
  S=$WORK/scenario
  rm -rf "$S"
  mkdir -p "$S"/{kms,cppclient,cppserver,init/etc,secrets,out}
  trap cleanup EXIT

  step "SIMULATED platform and enclave identities (sgx-sim; nothing here is SGX hardware)"
  "$BIN/sgx-sim" init "$S/platform" >/dev/null
  local signer
  signer=$(printf 'occlum-cpp interop (SIMULATED)' | sha256sum | cut -d' ' -f1)
  for who in kms cppclient cppserver init stranger; do
    "$BIN/sgx-sim" identity --out "$S/$who.identity.json" --name "$who" --mr-signer "$signer" >/dev/null
  done
  # Secrets of each base64 padding class: none (48 bytes), "==" (46), "=" (47); random bytes.
  head -c 48 /dev/urandom > "$S/secrets/nopad"
  head -c 46 /dev/urandom > "$S/secrets/pad2"
  head -c 47 /dev/urandom > "$S/secrets/pad1"
  "$BIN/kms" gen-image-key --out "$S/secrets/image_key" >/dev/null
  # Occlum's client decodes the quoted reply with its base64 bug (README): NULs where the
  # padding was, the reply's length otherwise. What it must write:
  cp "$S/secrets/nopad" "$S/secrets/nopad.occlum"
  { cat "$S/secrets/pad2"; printf '\0\0'; } > "$S/secrets/pad2.occlum"
  { cat "$S/secrets/pad1"; printf '\0'; } > "$S/secrets/pad1.occlum"
  secrets_json "$S/kms/secret_config.json" nopad="$S/secrets/nopad" pad2="$S/secrets/pad2" \
    pad1="$S/secrets/pad1" flask_cert="$S/secrets/pad2" flask_key="$S/secrets/nopad" \
    image_key="$S/secrets/image_key"
  cp "$S/kms/secret_config.json" "$S/cppserver/secret_config.json"

  local pccs_port kms_port compat_port server_port rc
  pccs_port=$(free_port)
  "$BIN/sgx-sim" pccs "$S/platform" --listen "127.0.0.1:$pccs_port" >"$S/pccs.log" 2>&1 &
  PIDS+=($!)
  wait_for "$S/pccs.log" 'listening on' "${PIDS[-1]}"

  # --- a. Occlum's C++ client -> the KMS ---------------------------------------------------
  step "a. Occlum's C++ client -> our KMS (main port and --occlum-compat-listen)"
  policy "$S/kms/dynamic_config.json" "$S/cppclient.identity.json"
  policy "$S/cppclient/dynamic_config.json" "$S/kms.identity.json"
  kms_port=$(free_port)
  compat_port=$(free_port)
  (cd "$S/kms" && exec "$BIN/kms" serve --listen "127.0.0.1:$kms_port" \
    --occlum-compat-listen "127.0.0.1:$compat_port" \
    --ra-config dynamic_config.json --secrets secret_config.json \
    --sim-platform "$S/platform" --sim-identity "$S/kms.identity.json" \
    --pccs-url "http://127.0.0.1:$pccs_port" --audit-log "$S/kms-audit.jsonl") >"$S/kms.log" 2>&1 &
  PIDS+=($!)
  wait_for "$S/kms.log" 'occlum-compat-listen' "${PIDS[-1]}"
  wait_for "$S/kms.log" 'listening on' "${PIDS[-1]}"

  for name in nopad pad2 pad1; do
    rc=$(cpp_client "$S/cppclient" "$S/cppclient.identity.json" "127.0.0.1:$compat_port" "$name" "$S/out/kms-$name")
    [ "$rc" = 0 ] || fail "client exit status ($name)" "$rc (log: $S/cppclient/$name.log)"
    same_file "compat port: Occlum's client writes $name as Occlum's decoder makes it" \
      "$S/secrets/$name.occlum" "$S/out/kms-$name"
  done
  if audit_has "$S/kms-audit.jsonl" 'r.get("event") == "attestation" and r.get("verdict") == "ok" and r.get("matched") == "cppclient"'; then
    ok "KMS audit: attestation ok, matched cppclient"
  else fail "KMS audit: attestation ok, matched cppclient" "no such record in $S/kms-audit.jsonl"; fi
  n=$(grep '"event":"attestation"' "$S/kms-audit.jsonl" | grep -c '"verdict":"ok"' || true)
  if [ "$n" = 3 ]; then ok "KMS audit: 3 attestations (one per client process)"; else fail "KMS audit: 3 attestations" "$n"; fi
  n=$(grep -c '"event":"release"' "$S/kms-audit.jsonl" || true)
  if [ "$n" = 3 ]; then ok "KMS audit: 3 release records"; else fail "KMS audit: 3 release records" "$n"; fi

  rc=$(cpp_client "$S/cppclient" "$S/cppclient.identity.json" "127.0.0.1:$kms_port" main "$S/out/kms-main")
  if [ ! -e "$S/out/kms-main" ] && grep -q 'INVALID_FIELD_FOR_VERSION' "$S/kms.log" "$S/cppclient/main.log"; then
    ok "main port: refused in the TLS handshake (INVALID_FIELD_FOR_VERSION), nothing written (client exit $rc)"
  else
    fail "main port: refused in the TLS handshake" "file written or no INVALID_FIELD_FOR_VERSION (logs: $S/kms.log, $S/cppclient/main.log)"
  fi
  if audit_has "$S/kms-audit.jsonl" 'r.get("event") == "release" and r.get("secret") == "main"'; then
    fail "main port: nothing released" "a release record for main"
  else ok "main port: no release record"; fi

  rc=$(cpp_client "$S/cppclient" "$S/stranger.identity.json" "127.0.0.1:$compat_port" nopad "$S/out/kms-stranger")
  if [ ! -e "$S/out/kms-stranger" ] \
    && audit_has "$S/kms-audit.jsonl" 'r.get("event") == "attestation" and r.get("verdict") == "rejected" and "measurement-policy" in json.dumps(r)'; then
    ok "compat port: a client the KMS's ra_config does not admit gets nothing (audit: rejected, measurement-policy; client exit $rc)"
  else fail "compat port: policy refusal" "file written or no rejected record ($S/kms-audit.jsonl)"; fi

  policy "$S/cppclient/dynamic_config.json" "$S/stranger.identity.json"
  rc=$(cpp_client "$S/cppclient" "$S/cppclient.identity.json" "127.0.0.1:$compat_port" nopad "$S/out/kms-untrusted")
  if [ ! -e "$S/out/kms-untrusted" ] && grep -q 'verify the measurement failed' "$S/cppclient/nopad.log"; then
    ok "Occlum's client refuses a KMS its dynamic_config.json does not admit (client exit $rc)"
  else fail "Occlum's client refuses an unadmitted KMS" "see $S/cppclient/nopad.log"; fi
  policy "$S/cppclient/dynamic_config.json" "$S/kms.identity.json"

  # A KMS quoting on another simulated platform (another root): the shim's DCAP check, not the
  # measurement policy, must refuse it (its identity is the admitted one).
  "$BIN/sgx-sim" init "$S/platform2" >/dev/null
  local foreign_port
  foreign_port=$(free_port)
  mkdir -p "$S/kms2"
  cp "$S/kms/dynamic_config.json" "$S/kms/secret_config.json" "$S/kms2/"
  (cd "$S/kms2" && exec "$BIN/kms" serve --listen "127.0.0.1:$(free_port)" \
    --occlum-compat-listen "127.0.0.1:$foreign_port" \
    --ra-config dynamic_config.json --secrets secret_config.json \
    --sim-platform "$S/platform2" --sim-identity "$S/kms.identity.json" \
    --audit-log "$S/kms2-audit.jsonl") >"$S/kms2.log" 2>&1 &
  PIDS+=($!)
  wait_for "$S/kms2.log" 'listening on' "${PIDS[-1]}"
  rc=$(cpp_client "$S/cppclient" "$S/cppclient.identity.json" "127.0.0.1:$foreign_port" foreign "$S/out/kms-foreign")
  if [ ! -e "$S/out/kms-foreign" ] && grep -q 'dcap_verify_quote: REJECTED' "$S/cppclient/foreign.log" \
    && grep -q 'verify quote failed' "$S/cppclient/foreign.log"; then
    ok "Occlum's client refuses a KMS whose quote does not verify (another root; client exit $rc)"
  else fail "Occlum's client refuses an unverifiable KMS quote" "see $S/cppclient/foreign.log"; fi
  kill "${PIDS[-1]}" 2>/dev/null || true

  # --- c. the KMS's certificate as Occlum's client sees it ---------------------------------
  step "c. the KMS's stapled certificate and Occlum's 16,000-byte buffer"
  local len
  len=$(pem_len "127.0.0.1:$compat_port")
  if [ "$len" -gt 0 ] && [ "$len" -lt 15000 ]; then
    ok "the KMS's certificate on the compat port: $len bytes of PEM (< 15,000)"
  else fail "the KMS's certificate size" "$len bytes of PEM"; fi
  if grep -qi 'stapl\|7283' "$S/kms.log" || openssl s_client -connect "127.0.0.1:$compat_port" -servername RATLS </dev/null 2>/dev/null \
    | openssl x509 -noout -text 2>/dev/null | grep -q '1.3.6.1.3.7283.1'; then
    ok "the certificate carries the collateral staple (1.3.6.1.3.7283.1)"
  else fail "the certificate carries the staple" "extension 1.3.6.1.3.7283.1 not found"; fi
  rc=$(cpp_client "$S/cppclient" "$S/cppclient.identity.json" "127.0.0.1:$compat_port" nopad "$S/out/kms-c")
  if [ "$rc" = 0 ] && grep -q 'Succeed to verify the quote' "$S/cppclient/nopad.log" \
    && grep -q 'verify result  :  success' "$S/cppclient/nopad.log" && cmp -s "$S/out/kms-nopad" "$S/out/kms-c"; then
    ok "Occlum's client copied that certificate into its buffer, verified it and got the secret (exit 0, no crash)"
  else fail "Occlum's client and the KMS certificate" "exit $rc (139: SIGSEGV); see $S/cppclient/nopad.log"; fi

  # Control: the same client against a server whose certificate is over 16,000 bytes of PEM
  # (openssl s_server, a 13,000-character nsComment) crashes, as issue 22 reported for the
  # first staple format; so the check above is a real one.
  mkdir -p "$S/big"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$S/big/key.pem" -out "$S/big/cert.pem" \
    -subj /CN=big -days 2 -addext "nsComment=$(head -c 13000 /dev/zero | tr '\0' A)" 2>/dev/null
  local big_port
  big_port=$(free_port)
  openssl s_server -accept "127.0.0.1:$big_port" -cert "$S/big/cert.pem" -key "$S/big/key.pem" \
    -alpn h2 -quiet >"$S/big/s_server.log" 2>&1 &
  PIDS+=($!)
  sleep 1
  rc=$(cpp_client "$S/cppclient" "$S/cppclient.identity.json" "127.0.0.1:$big_port" big "$S/out/big")
  if [ "$rc" = 139 ]; then
    ok "control: a certificate of $(stat -c %s "$S/big/cert.pem") bytes of PEM crashes Occlum's client (exit 139, SIGSEGV)"
  else fail "control: an oversized certificate crashes Occlum's client" "exit $rc; see $S/cppclient/big.log"; fi
  kill "${PIDS[-1]}" 2>/dev/null || true

  # --- b. our init -> Occlum's C++ server --------------------------------------------------
  step "b. our init (host mode) -> Occlum's C++ server"
  server_port=$(free_port)
  start_cpp_server() {
    (cd "$S/cppserver" && OCCLUM_DCAP_SIM_PLATFORM=$S/platform \
      OCCLUM_DCAP_SIM_IDENTITY=$S/cppserver.identity.json LD_LIBRARY_PATH=$EXAMPLES:$SHIM_LIB \
      exec "$EXAMPLES/server" "127.0.0.1:$server_port") >"$S/cppserver/$1.log" 2>&1 &
    PIDS+=($!)
    wait_for "$S/cppserver/$1.log" 'Server listening on' "${PIDS[-1]}"
  }
  stop_cpp_server() { kill "${PIDS[-1]}" 2>/dev/null || true; wait "${PIDS[-1]}" 2>/dev/null || true; }
  policy "$S/cppserver/dynamic_config.json" "$S/init.identity.json" "$S/cppclient.identity.json"
  python3 - "$S/init/etc/init_ra_conf.json" "$S/cppserver.identity.json" "127.0.0.1:$server_port" <<'EOF'
import json, sys
i = json.load(open(sys.argv[2]))
mr = {k: i[k] for k in ("mr_enclave", "mr_signer", "isv_prod_id", "isv_svn", "config_svn", "debuggable")}
json.dump({"kms_server": sys.argv[3],
           "kms_keys": [{"key": "flask_cert", "path": "/etc/flask.crt"},
                        {"key": "flask_key", "path": "/etc/flask.key"}],
           "ra_config": {"verify_mr_enclave": "on", "verify_mr_signer": "on",
                         "verify_isv_prod_id": "on", "verify_isv_svn": "on",
                         "verify_config_svn": "on", "verify_enclave_debuggable": "on",
                         "sgx_mrs": [mr]}}, open(sys.argv[1], "w"), indent=4)
EOF
  cp "$ROOT/occlum-configs/image_config.json" "$S/init/etc/image_config.json"
  mkdir -p "$S/image/bin"
  echo 'the rootfs image init unlocks with image_key from Occlum server' > "$S/image/bin/marker"
  "$BIN/init" pack-image --key "$S/secrets/image_key" --in "$S/image" --out "$S/rootfs.img" >/dev/null
  run_init() {
    rm -rf "$S/rootfs"
    rc=0
    local t0
    t0=$(date +%s%N)
    timeout 120 "$BIN/init" host --config-dir "$S/init" --sim-platform "$S/platform" \
      --sim-identity "$S/init.identity.json" --image "$S/rootfs.img" --rootfs "$S/rootfs" \
      --kms-server "127.0.0.1:$server_port" >"$S/init-$1.log" 2>&1 || rc=$?
    init_ms=$((($(date +%s%N) - t0) / 1000000))
  }

  start_cpp_server admit
  run_init admit
  if [ "$rc" = 0 ]; then ok "init exits 0 against Occlum's server"
  else fail "init against Occlum's server" "exit $rc (log: $S/init-admit.log)"; fi
  same_file "init wrote flask_cert from Occlum's server (padded base64 decoded exactly)" "$S/secrets/pad2" "$S/rootfs/etc/flask.crt"
  same_file "init wrote flask_key from Occlum's server" "$S/secrets/nopad" "$S/rootfs/etc/flask.key"
  same_file "init unlocked the rootfs image with image_key from Occlum's server" "$S/image/bin/marker" "$S/rootfs/bin/marker"
  # Baseline: Occlum's client against Occlum's server writes what it wrote against the KMS.
  for name in nopad pad2 pad1; do
    policy "$S/cppclient/dynamic_config.json" "$S/cppserver.identity.json"
    cpp_client "$S/cppclient" "$S/cppclient.identity.json" "127.0.0.1:$server_port" "$name" "$S/out/occlum-$name" >/dev/null
    same_file "Occlum's client writes $name identically against Occlum's server and our KMS" \
      "$S/out/kms-$name" "$S/out/occlum-$name"
  done
  stop_cpp_server

  policy "$S/cppserver/dynamic_config.json" "$S/stranger.identity.json"
  start_cpp_server refuse
  run_init refuse
  if [ "$rc" = 7 ] && [ ! -e "$S/rootfs/etc/flask.key" ] && grep -q 'most likely' "$S/init-refuse.log"; then
    ok "Occlum's dynamic_config.json refuses init: init exits 7 (refusal) after ${init_ms} ms, writes nothing"
  else fail "Occlum's server refuses init" "exit $rc (log: $S/init-refuse.log)"; fi
  stop_cpp_server

  policy "$S/cppserver/dynamic_config.json" "$S/init.identity.json"
  start_cpp_server untrusted
  python3 - "$S/init/etc/init_ra_conf.json" "$S/stranger.identity.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); i = json.load(open(sys.argv[2]))
c["ra_config"]["sgx_mrs"][0]["mr_enclave"] = i["mr_enclave"]
json.dump(c, open(sys.argv[1], "w"), indent=4)
EOF
  run_init untrusted
  if [ "$rc" = 6 ] && [ ! -e "$S/rootfs/etc/flask.key" ]; then
    ok "init refuses an Occlum server its ra_config does not admit: exit 6, writes nothing"
  else fail "init refuses an unadmitted Occlum server" "exit $rc (log: $S/init-untrusted.log)"; fi
  stop_cpp_server

  if "$BIN/kms" audit verify "$S/kms-audit.jsonl" >"$S/audit-verify.log" 2>&1; then
    ok "kms audit verify: the KMS's audit log is an intact hash chain"
  else fail "kms audit verify" "$(cat "$S/audit-verify.log")"; fi

  # No secret value in any log.
  local leaks=0 needle
  for f in nopad pad1 pad2 image_key; do
    needle=$(base64 -w 0 "$S/secrets/$f")
    if grep -rqF -- "$needle" "$S"/*.log "$S"/cppclient/*.log "$S"/cppserver/*.log "$S/kms-audit.jsonl"; then leaks=$((leaks + 1)); fi
  done
  if [ "$leaks" = 0 ]; then ok "no secret (base64) in any log"; else fail "no secret in any log" "$leaks found"; fi

  cleanup
  PIDS=()
  echo "$passed passed, $failed failed (scenario and logs: $S)"
  [ "$failed" = 0 ]
}

case "$STAGE" in
  build) build_all ;;
  run) run_all ;;
  all) build_all; run_all ;;
esac
