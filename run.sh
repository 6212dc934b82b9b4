#!/usr/bin/env bash
# Runs the demo that build.sh built: the KMS, then the client (init attests, fetches the secrets,
# unlocks the rootfs, hands over to the app), waits until the app answers, and prints the seed's
# curl commands.
#
#   ./run.sh          start everything (stops a previous run first)
#   ./run.sh client   (re)start only the client: it re-attests and fetches its secrets again
#   ./run.sh stop     stop everything
#
# Knobs (environment): DEMO_DIR (default ./demo), KMS_PORT (50051), APP_PORT (4996),
# READY_TIMEOUT seconds (default 120).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
DEMO=${DEMO_DIR:-$ROOT/demo}
KMS_PORT=${KMS_PORT:-50051}
APP_PORT=${APP_PORT:-4996}
READY_TIMEOUT=${READY_TIMEOUT:-120}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET/release
# The host demo's init: built with `simulation` by build.sh (init/build-musl.sh --simulation).
MUSL_INIT=$TARGET/musl-simulation/x86_64-unknown-linux-musl/release/init
LOGS=$DEMO/logs
PIDS=$DEMO/run

die() { echo "run.sh: $*" >&2; exit 1; }

main() {
  [ -f "$DEMO/mode" ] || die "nothing built in $DEMO: run ./build.sh first"
  MODE=$(cat "$DEMO/mode")
  mkdir -p "$LOGS" "$PIDS"
  case "${1:-start}" in
    start) stop_all; start_kms; start_client; print_usage ;;
    client) stop_one client; start_client; print_usage ;;
    stop) stop_all; echo "stopped" ;;
    *) die "usage: ./run.sh [start|client|stop]" ;;
  esac
}

start_kms() {
  if [ "$MODE" = host ]; then
    echo "==> starting the SIMULATED PCCS (collateral of the simulated platform)"
    spawn pccs "$DEMO" "$RELEASE/sgx-sim" pccs "$DEMO/platform" --listen 127.0.0.1:0
    PCCS_URL="http://$(wait_for_line pccs 'listening on ' | awk '{print $NF}')"
    echo "$PCCS_URL" > "$PIDS/pccs.url"
    echo "==> starting the KMS on 127.0.0.1:$KMS_PORT (SIMULATED enclave; audit log: $LOGS/kms-audit.jsonl)"
    spawn kms "$DEMO/kms" "$RELEASE/kms" serve --listen "127.0.0.1:$KMS_PORT" \
      --ra-config dynamic_config.json --secrets secret_config.json \
      --sim-platform "$DEMO/platform" --sim-identity identity.json \
      --pccs-url "$PCCS_URL" --audit-log "$LOGS/kms-audit.jsonl"
  else
    echo "==> starting the KMS enclave: occlum run /bin/server localhost:$KMS_PORT"
    spawn kms "$DEMO/occlum_server" occlum run /bin/server "localhost:$KMS_PORT"
  fi
  wait_for_line kms 'listening on' >/dev/null
}

start_client() {
  if [ "$MODE" = host ]; then
    local pccs_url
    pccs_url=$(cat "$PIDS/pccs.url" 2>/dev/null) || die "the PCCS is not running: ./run.sh start"
    echo "==> starting the client: init attests to the KMS, unlocks the rootfs, execs the app"
    spawn client "$DEMO/client" "$MUSL_INIT" host --config-dir "$DEMO/client" \
      --sim-platform "$DEMO/platform" --sim-identity "$DEMO/client/identity.json" \
      --image "$DEMO/client/rootfs.img" --rootfs "$DEMO/client/rootfs" --pccs-url "$pccs_url" \
      -- '{rootfs}/bin/app' --listen "127.0.0.1:$APP_PORT" \
      --cert '{rootfs}/etc/flask.crt' --key '{rootfs}/etc/flask.key' --data-dir "$DEMO/client/data"
  else
    echo "==> starting the client enclave: occlum run --config-svn 1234 /bin/app"
    spawn client "$DEMO/occlum_client" occlum run --config-svn 1234 /bin/app --listen "0.0.0.0:$APP_PORT"
  fi
  wait_for_app
}

# spawn NAME DIR COMMAND...: starts COMMAND in DIR in the background, logging to $LOGS/NAME.log,
# as the leader of its own process group (setsid), so stop_one reaches all of it: `occlum run`
# is a bash script whose child occlum-run holds the enclave, and a surviving occlum-run makes
# the next `occlum run` fail with "the process of current Occlum instance is running".
spawn() {
  local name=$1 dir=$2
  shift 2
  (cd "$dir" && exec setsid "$@") > "$LOGS/$name.log" 2>&1 &
  echo $! > "$PIDS/$name.pid"
}

# wait_for_line NAME PATTERN: waits until NAME's log has PATTERN; prints that line.
wait_for_line() {
  local name=$1 pattern=$2 deadline=$((SECONDS + READY_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    if grep -m1 "$pattern" "$LOGS/$name.log" 2>/dev/null; then return 0; fi
    alive "$name" || { tail -n 20 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
    sleep 0.1
  done
  die "$name did not print '$pattern' within ${READY_TIMEOUT}s (log: $LOGS/$name.log)"
}

wait_for_app() {
  local deadline=$((SECONDS + READY_TIMEOUT)) code
  while [ $SECONDS -lt $deadline ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$DEMO/flask.crt" \
      "https://localhost:$APP_PORT/customer/0" 2>/dev/null || true)
    case "$code" in 200 | 404) return 0 ;; esac
    alive client || { tail -n 20 "$LOGS/client.log" >&2; die "the client exited (log: $LOGS/client.log)"; }
    sleep 0.2
  done
  die "the app did not answer on https://localhost:$APP_PORT within ${READY_TIMEOUT}s (log: $LOGS/client.log)"
}

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# stop_one NAME: SIGTERM to NAME's whole process group (see spawn), SIGKILL to whatever of it
# is left after 5 s.
stop_one() {
  local name=$1 pid
  [ -f "$PIDS/$name.pid" ] || return 0
  pid=$(cat "$PIDS/$name.pid")
  case "$pid" in '' | *[!0-9]*) die "$PIDS/$name.pid does not hold a process id" ;; esac
  if kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  elif kill -0 "$pid" 2>/dev/null; then
    # Started by an older run.sh, not a group leader: only the process itself.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
}

stop_all() {
  stop_one client
  stop_one kms
  stop_one pccs
  rm -f "$PIDS/pccs.url"
}

print_usage() {
  local kind="SIMULATED SGX platform (no hardware attestation)"
  [ "$MODE" = occlum ] && kind="Occlum on SGX hardware"
  cat <<EOF

The app is up ($kind). Try the seed's commands:

curl --cacert $DEMO/flask.crt -X PUT https://localhost:$APP_PORT/customer/1 -d "data=Tom"
curl --cacert $DEMO/flask.crt -X PUT https://localhost:$APP_PORT/customer/2 -d "data=Jerry"
curl --cacert $DEMO/flask.crt -X GET https://localhost:$APP_PORT/customer/1
curl --cacert $DEMO/flask.crt -X GET https://localhost:$APP_PORT/customer/2

Logs: $LOGS/kms.log, $LOGS/kms-audit.jsonl, $LOGS/client.log${PCCS_URL:+, $LOGS/pccs.log}
Stop: ./run.sh stop    Restart only the client (re-attests): ./run.sh client
EOF
}

main "$@"
