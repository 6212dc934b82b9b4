#!/usr/bin/env bash
# Builds the demo: a KMS enclave holding the secrets and a client enclave whose init attests to
# it, fetches image_key and the app's TLS cert/key, unlocks the rootfs and starts the app.
#
# With `occlum` on PATH: the seed's build_content.sh flow with our binaries (occlum_server with
# the KMS, occlum_client created by `occlum new --init-ra grpc_ratls` with our init as
# initfs/bin/init). Without Occlum: the same layout on this host with the SIMULATED SGX platform
# (sgx-sim); nothing here is then evidence of real SGX hardware.
#
# Knobs (environment): DEMO_DIR (default ./demo), KMS_PORT (50051), DEBUGGABLE (false),
# TCB_STATUSES (accepted TCB statuses, JSON list items, default "UpToDate"), FORCE_HOST=1 to
# build the simulated host demo even where Occlum is installed, BUILD_CHECK_ONLY=1 to stop after
# the prerequisites check. Occlum mode: OCCLUM_TOOLCHAIN (occlum-gcc's prefix, default
# /opt/occlum/toolchains/gcc), OCCLUM_GLIBC (default /opt/occlum/glibc/lib), QCNL_CONF (the QCNL
# file copied into both images, default /etc/sgx_default_qcnl.conf), OCCLUM_CPP_CLIENTS=1 to
# build the KMS with the `occlum-cpp-clients` feature (gRPC core on a vendored OpenSSL, so
# Occlum's C++ grpc_ratls clients, whose X.509 v1 certificates BoringSSL refuses, can connect;
# costs about a third more KMS CPU per attestation: README, "Compatibility with Occlum's C++").
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
DEMO=${DEMO_DIR:-$ROOT/demo}
KMS_PORT=${KMS_PORT:-50051}
DEBUGGABLE=${DEBUGGABLE:-false}
TCB_STATUSES=${TCB_STATUSES:-'"UpToDate"'}
CLIENT_ISV_SVN=88      # Occlum.json version_number, as in the seed
CLIENT_CONFIG_SVN=1234 # occlum run --config-svn 1234 (KSS), as in the seed
KMS_ISV_PROD_ID=1      # the KMS enclave's product id; init's policy requires it
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET/release
# Occlum's init: no `simulation` feature. The host demo's init (simulated platform) is built
# apart by `init/build-musl.sh --simulation`, so this path never holds a simulation build.
MUSL_INIT=$TARGET/x86_64-unknown-linux-musl/release/init
# The KMS binary with the operator's tools (gen-cert, gen-image-key): host mode's kms (built with
# `simulation`, which implies `host-tools`); in Occlum mode a host-tools build kept apart, since
# the KMS in the enclave has none (build_binaries).
KMS_TOOLS=$RELEASE/kms
MUSL_INIT_SIM=$TARGET/musl-simulation/x86_64-unknown-linux-musl/release/init
OCCLUM_TOOLCHAIN=${OCCLUM_TOOLCHAIN:-/opt/occlum/toolchains/gcc} # occlum-gcc and its musl sysroot
OCCLUM_GLIBC=${OCCLUM_GLIBC:-/opt/occlum/glibc/lib}               # the glibc Occlum images carry
# Intel's QCNL configuration (which PCCS, use_secure_cert) copied into both images.
QCNL_CONF=${QCNL_CONF:-/etc/sgx_default_qcnl.conf}

STEP="start"
step() { STEP=$*; printf '\n==> %s\n' "$*"; }
on_exit() {
  local status=$?
  [ "$status" -eq 0 ] || echo "build.sh: FAILED at step: $STEP (exit $status)" >&2
}
trap on_exit EXIT

main() {
  if command -v occlum >/dev/null 2>&1 && [ "${FORCE_HOST:-0}" != 1 ]; then
    MODE=occlum
    KMS_TOOLS=$TARGET/host-tools/kms
  else
    MODE=host
  fi
  check_prerequisites
  build_binaries
  mkdir -p "$DEMO"
  make_app_tls_and_image_key
  if [ "$MODE" = occlum ]; then
    build_occlum
  else
    build_host
  fi
  echo "$MODE" > "$DEMO/mode"
  step "done ($MODE mode): now run ./run.sh"
}

check_prerequisites() {
  step "checking prerequisites"
  local missing=() apt=()
  command -v cargo >/dev/null || missing+=("cargo (install Rust with rustup: https://rustup.rs)")
  command -v cc >/dev/null || { missing+=("a C compiler"); apt+=(build-essential); }
  command -v c++ >/dev/null || { missing+=("a C++ compiler (grpcio)"); apt+=(g++); }
  command -v cmake >/dev/null || { missing+=("cmake (grpcio's C core)"); apt+=(cmake); }
  command -v curl >/dev/null || { missing+=("curl (run.sh checks the app with it)"); apt+=(curl); }
  if [ "$MODE" = occlum ]; then
    # Never Debian's musl here: its package owns /lib/ld-musl-x86_64.so.1, which on an Occlum
    # host is Occlum's own musl (a link into /opt/occlum/toolchains/gcc). init is linked with
    # Occlum's musl toolchain instead (occlum-gcc, Occlum's musl sysroot).
    OCCLUM_GCC=$(command -v occlum-gcc || echo "$OCCLUM_TOOLCHAIN/bin/occlum-gcc")
    [ -x "$OCCLUM_GCC" ] || missing+=("occlum-gcc (Occlum's musl toolchain, $OCCLUM_TOOLCHAIN/bin; ships with Occlum)")
    [ -e "$OCCLUM_GLIBC/libc.so.6" ] || missing+=("Occlum's glibc $OCCLUM_GLIBC/libc.so.6 (ships with Occlum)")
    command -v jq >/dev/null || { missing+=("jq (Occlum.json edits)"); apt+=(jq); }
    command -v copy_bom >/dev/null || missing+=("copy_bom (ships with Occlum)")
  else
    command -v musl-gcc >/dev/null || { missing+=("musl-gcc (init is a musl PIE, as Occlum loads it)"); apt+=(musl-tools); }
    [ -e /lib/ld-musl-x86_64.so.1 ] || { missing+=("the musl loader /lib/ld-musl-x86_64.so.1"); apt+=(musl); }
  fi
  if [ ${#apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing with apt-get: ${apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt[@]}" >/dev/null
    missing=()
    command -v cargo >/dev/null || missing+=("cargo (install Rust with rustup: https://rustup.rs)")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'missing: %s\n' "${missing[@]}" >&2
    [ ${#apt[@]} -gt 0 ] && echo "on Debian/Ubuntu: sudo apt-get install ${apt[*]}" >&2
    exit 1
  fi
  [ "${BUILD_CHECK_ONLY:-0}" = 1 ] && { echo "prerequisites ok ($MODE mode)"; exit 0; }
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    echo "adding the rustup target x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl
  fi
}

build_binaries() {
  if [ "$MODE" = occlum ]; then
    # No `simulation` feature and no sgx-sim in the build: the KMS and init that go into the
    # enclaves cannot trust a simulated root (kms is built on its own so no other package's
    # features are unified into it).
    local kms_features=()
    [ "${OCCLUM_CPP_CLIENTS:-}" = 1 ] && kms_features=(occlum-cpp-clients)
    # The operator's tools (gen-cert, gen-image-key, seal, ...) are not in the KMS that goes into
    # the enclave: a host-tools build made first, with the same other features (so the two share
    # every dependency and only the kms crate compiles twice), is kept apart as $KMS_TOOLS.
    step "building the KMS's host tools (kms --features host-tools; grpcio's C core takes ~8 min the first time)"
    local tools_features
    tools_features=$(IFS=,; echo "host-tools${kms_features[*]:+,${kms_features[*]}}")
    cargo build --release --locked -p kms --features "$tools_features"
    mkdir -p "$(dirname "$KMS_TOOLS")"
    cp "$RELEASE/kms" "$KMS_TOOLS"
    step "building kms for Occlum (release, no simulation, no host tools)"
    cargo build --release --locked -p kms ${kms_features[@]:+--features "${kms_features[*]}"}
    "$ROOT/occlum-configs/check-host-tools.sh" absent kms "$RELEASE/kms"
    step "building app (release)"
    cargo build --release --locked -p app
    step "checking that kms and app load under Occlum's glibc ($OCCLUM_GLIBC)"
    "$ROOT/occlum-configs/check-glibc.sh" --glibc "$OCCLUM_GLIBC/libc.so.6" "$RELEASE/kms" "$RELEASE/app"
    step "building init with Occlum's musl toolchain ($OCCLUM_GCC): dynamic musl PIE, no simulation"
    MUSL_CC=$OCCLUM_GCC "$ROOT/init/build-musl.sh"
  else
    step "building kms, app, sgx-sim, ratls (inspect, in pccs-client), init with the SIMULATED platform (release; grpcio's C core takes ~8 min the first time)"
    cargo build --release --locked -p kms -p app -p sgx-sim -p pccs-client -p init \
      --features kms/simulation,init/simulation
    step "building init as a musl PIE with host mode (simulation)"
    "$ROOT/init/build-musl.sh" --simulation
  fi
}

make_app_tls_and_image_key() {
  step "app TLS certificate/key and the rootfs image key (kept across rebuilds)"
  # Kept if present, so a --cacert the user already pasted keeps working.
  if [ ! -s "$DEMO/flask.crt" ] || [ ! -s "$DEMO/flask.key" ]; then
    "$KMS_TOOLS" gen-cert --cn localhost --out-cert "$DEMO/flask.crt" --out-key "$DEMO/flask.key"
  fi
  [ -s "$DEMO/image_key" ] || "$KMS_TOOLS" gen-image-key --out "$DEMO/image_key"
  step "secret_config.json (base64 values, as the seed's gen_secret_json)"
  local cert key image_key
  cert=$(base64 -w 0 "$DEMO/flask.crt")
  key=$(base64 -w 0 "$DEMO/flask.key")
  image_key=$(base64 -w 0 "$DEMO/image_key")
  mkdir -p "$DEMO/kms"
  umask 077
  printf '{\n  "flask_cert": "%s",\n  "flask_key": "%s",\n  "image_key": "%s"\n}\n' \
    "$cert" "$key" "$image_key" > "$DEMO/kms/secret_config.json"
  umask 022
}

# fill TEMPLATE OUT NAME=VALUE...: replaces @NAME@ placeholders; fails if one is left.
fill() {
  local template=$1 out=$2 args=() kv
  shift 2
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$template" > "$out"
  if grep -q '@[A-Z_]*@' "$out"; then
    echo "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)" >&2
    exit 1
  fi
}

sha256_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

build_host() {
  step "SIMULATED SGX platform (sgx-sim): root CA, PCK chain, TCB info, QE identity, CRLs"
  echo "    This machine has no SGX: quotes are signed by a simulated quoting enclave and verify"
  echo "    only under the simulated root in $DEMO/platform/root-ca.pem. Never use it in production."
  rm -rf "$DEMO/platform"
  "$RELEASE/sgx-sim" init "$DEMO/platform"

  step "enclave identities (stand-ins for what the CPU would measure)"
  # mr_enclave: the hash of the code each enclave would run; mr_signer: one demo signing key.
  local signer kms_mre client_mre debug_flag=()
  [ "$DEBUGGABLE" = true ] && debug_flag=(--debuggable)
  signer=$(printf 'occlum-ratls demo signing key (SIMULATED)' | sha256sum | cut -d' ' -f1)
  kms_mre=$(sha256_of "$RELEASE/kms")
  client_mre=$(sha256_of "$MUSL_INIT_SIM" "$RELEASE/app" "$ROOT/occlum-configs/init_ra_conf.template.json")
  "$RELEASE/sgx-sim" identity --out "$DEMO/kms/identity.json" --name kms --mr-enclave "$kms_mre" \
    --mr-signer "$signer" --isv-prod-id "$KMS_ISV_PROD_ID" "${debug_flag[@]}"
  mkdir -p "$DEMO/client/etc"
  "$RELEASE/sgx-sim" identity --out "$DEMO/client/identity.json" --name flask-client \
    --mr-enclave "$client_mre" --mr-signer "$signer" --isv-prod-id 0 --isv-svn "$CLIENT_ISV_SVN" \
    --config-svn "$CLIENT_CONFIG_SVN" "${debug_flag[@]}"

  step "KMS policy dynamic_config.json (which client may read secrets)"
  fill "$ROOT/occlum-configs/dynamic_config.template.json" "$DEMO/kms/dynamic_config.json" \
    CLIENT_MR_ENCLAVE="$client_mre" CLIENT_MR_SIGNER="$signer" CLIENT_ISV_PROD_ID=0 \
    CLIENT_ISV_SVN="$CLIENT_ISV_SVN" CLIENT_CONFIG_SVN="$CLIENT_CONFIG_SVN" DEBUGGABLE="$DEBUGGABLE" \
    TCB_STATUSES="$TCB_STATUSES"

  step "client initfs config: etc/init_ra_conf.json (which KMS to trust) and etc/image_config.json"
  fill "$ROOT/occlum-configs/init_ra_conf.template.json" "$DEMO/client/etc/init_ra_conf.json" \
    KMS_SERVER="localhost:$KMS_PORT" KMS_MR_SIGNER="$signer" KMS_ISV_PROD_ID="$KMS_ISV_PROD_ID" \
    DEBUGGABLE="$DEBUGGABLE" TCB_STATUSES="$TCB_STATUSES"
  # The demo pins the KMS's code, not only its signer: otherwise any enclave signed with the
  # demo key could pose as the KMS and feed init secrets of its choosing. The template stays
  # tolerant (verify_mr_enclave "off") for Occlum's own flow; init warns when it is not pinned.
  local ra_conf="$DEMO/client/etc/init_ra_conf.json"
  sed -i -e 's|"verify_mr_enclave" : "off"|"verify_mr_enclave" : "on"|' \
    -e "s|\"mr_enclave\" : \"\"|\"mr_enclave\" : \"$kms_mre\"|" "$ra_conf"
  if ! grep -q '"verify_mr_enclave" : "on"' "$ra_conf" || ! grep -q "\"mr_enclave\" : \"$kms_mre\"" "$ra_conf"; then
    echo "could not pin the KMS's mr_enclave in $ra_conf (template changed?)" >&2
    exit 1
  fi
  cp "$ROOT/occlum-configs/image_config.json" "$DEMO/client/etc/image_config.json"

  step "encrypted rootfs image with the app (AES-128-GCM under image_key)"
  rm -rf "$DEMO/client/image"
  mkdir -p "$DEMO/client/image/bin" "$DEMO/client/image/etc" "$DEMO/client/image/var/lib/app"
  cp "$RELEASE/app" "$DEMO/client/image/bin/app"
  "$MUSL_INIT_SIM" pack-image --key "$DEMO/image_key" --in "$DEMO/client/image" --out "$DEMO/client/rootfs.img"
  rm -rf "$DEMO/client/image"
}

# qcnl_conf: $DEMO/sgx_default_qcnl.conf, copied into both images: the host's $QCNL_CONF, or
# (none on this host) one naming Intel's PCS, so the enclaves' choice is visible and measured.
qcnl_conf() {
  step "QCNL configuration for both enclaves (PCCS URL, use_secure_cert)"
  if [ -f "$QCNL_CONF" ]; then
    cp "$QCNL_CONF" "$DEMO/sgx_default_qcnl.conf"
    echo "    copied $QCNL_CONF (pccs_url, use_secure_cert, collateral_service are read from it)"
  else
    echo "    $QCNL_CONF not found: the enclaves will fetch collateral from Intel's PCS (internet egress)"
    printf '{\n  "pccs_url": "https://api.trustedservices.intel.com/sgx/certification/v4/",\n  "use_secure_cert": true\n}\n' \
      > "$DEMO/sgx_default_qcnl.conf"
  fi
}

build_occlum() {
  local occlum_version
  occlum_version=$(occlum version 2>/dev/null || echo unknown)
  step "Occlum $occlum_version found: building occlum_client and occlum_server (real SGX path)"
  cd "$DEMO"
  qcnl_conf
  step "occlum_client: occlum new --init-ra grpc_ratls, with our init as initfs/bin/init"
  rm -rf occlum_client
  occlum new occlum_client --init-ra grpc_ratls
  cd occlum_client
  install -m 0755 "$MUSL_INIT" initfs/bin/init
  # init reads the PCCS URL (and use_secure_cert) from here; the initfs is measured.
  install -m 0644 "$DEMO/sgx_default_qcnl.conf" initfs/etc/sgx_default_qcnl.conf
  rm -rf image
  APP_BIN=$RELEASE/app copy_bom -f "$ROOT/occlum-configs/client.yaml" --root image --include-dir /opt/occlum/etc/template
  jq --argjson debuggable "$DEBUGGABLE" -f "$ROOT/occlum-configs/client.Occlum.jq" Occlum.json > Occlum.json.new
  mv Occlum.json.new Occlum.json
  # First build: the signing key (and so mr_signer) is known only after it.
  occlum build
  local signer
  signer=$(occlum print mrsigner)
  fill "$ROOT/occlum-configs/init_ra_conf.template.json" init_ra_conf.json \
    KMS_SERVER="localhost:$KMS_PORT" KMS_MR_SIGNER="$signer" KMS_ISV_PROD_ID="$KMS_ISV_PROD_ID" \
    DEBUGGABLE="$DEBUGGABLE" TCB_STATUSES="$TCB_STATUSES"
  occlum build -f --image-key ../image_key
  local client_mre
  client_mre=$(occlum print mrenclave)
  cd "$DEMO"

  step "occlum_server: the KMS with dynamic_config.json and secret_config.json"
  fill "$ROOT/occlum-configs/dynamic_config.template.json" kms/dynamic_config.json \
    CLIENT_MR_ENCLAVE="$client_mre" CLIENT_MR_SIGNER="$signer" CLIENT_ISV_PROD_ID=0 \
    CLIENT_ISV_SVN="$CLIENT_ISV_SVN" CLIENT_CONFIG_SVN="$CLIENT_CONFIG_SVN" DEBUGGABLE="$DEBUGGABLE" \
    TCB_STATUSES="$TCB_STATUSES"
  rm -rf occlum_server
  occlum new occlum_server
  cd occlum_server
  jq --argjson debuggable "$DEBUGGABLE" -f "$ROOT/occlum-configs/server.Occlum.jq" Occlum.json > Occlum.json.new
  mv Occlum.json.new Occlum.json
  rm -rf image
  KMS_BIN=$RELEASE/kms SERVER_DIR=$DEMO/kms QCNL_CONF=$DEMO/sgx_default_qcnl.conf \
    copy_bom -f "$ROOT/occlum-configs/server.yaml" --root image \
    --include-dir /opt/occlum/etc/template
  occlum build
  cd "$ROOT"
}

main "$@"
