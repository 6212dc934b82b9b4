#!/usr/bin/env bash
# End to end, as a new user runs it: ./build.sh && ./run.sh in a scratch DEMO_DIR, then the seed's
# four curl commands must return the expected JSON; the client is killed and restarted (it must
# re-attest and fetch its secrets again, and the customers must still be there); the KMS audit log
# must show one attestation per boot and no secret value may appear in any log.
# Prints "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scratch=$(mktemp -d)
export DEMO_DIR=$scratch/demo FORCE_HOST=1
export KMS_PORT=${E2E_KMS_PORT:-50151} APP_PORT=${E2E_APP_PORT:-4997}
passed=0
failed=0

cleanup() {
  "$ROOT/run.sh" stop >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

# same_json NAME EXPECTED ACTUAL: semantic JSON comparison (the app prints Flask's format).
same_json() {
  if python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' "$2" "$3" 2>/dev/null; then
    ok "$1"
  else
    fail "$1" "expected $2, got ${3:-<nothing>}"
  fi
}

app() { curl -sS --max-time 10 --cacert "$DEMO_DIR/flask.crt" "$@" || true; }
url() { echo "https://localhost:$APP_PORT/customer/$1"; }

if ./build.sh >"$scratch/build.log" 2>&1; then ok "./build.sh"; else
  tail -n 30 "$scratch/build.log"
  fail "./build.sh" "see the log above"
  echo "$passed passed, $failed failed"
  exit 1
fi
if ./run.sh >"$scratch/run.log" 2>&1; then ok "./run.sh"; else
  cat "$scratch/run.log"
  fail "./run.sh" "see the log above"
  echo "$passed passed, $failed failed"
  exit 1
fi
# expect NAME COMMAND...: passes when COMMAND succeeds.
expect() {
  local name=$1
  shift
  if "$@"; then ok "$name"; else fail "$name" "$*"; fi
}
expect "run.sh prints the curl commands" grep -q 'curl --cacert .*flask.crt -X PUT' "$scratch/run.log"
expect "run.sh says the platform is simulated" grep -q 'SIMULATED' "$scratch/run.log"

same_json "PUT /customer/1 data=Tom" '{"1": "Tom"}' "$(app -X PUT "$(url 1)" -d "data=Tom")"
same_json "PUT /customer/2 data=Jerry" '{"2": "Jerry"}' "$(app -X PUT "$(url 2)" -d "data=Jerry")"
same_json "GET /customer/1" '{"1": "Tom"}' "$(app -X GET "$(url 1)")"
same_json "GET /customer/2" '{"2": "Jerry"}' "$(app -X GET "$(url 2)")"

# The secrets landed in the unlocked rootfs with mode 0600, byte-exact.
for f in flask.crt flask.key; do
  got="$DEMO_DIR/client/rootfs/etc/$f"
  if cmp -s "$got" "$DEMO_DIR/$f" && [ "$(stat -c %a "$got")" = 600 ]; then ok "secret $f byte-exact, mode 0600"
  else fail "secret $f byte-exact, mode 0600" "$(stat -c '%a %s' "$got" 2>&1)"; fi
done

# Kill the client; restart it: it must attest again and find the stored customers.
if ./run.sh client >"$scratch/rerun.log" 2>&1; then ok "./run.sh client (restart)"; else
  fail "./run.sh client (restart)" "$(cat "$scratch/rerun.log")"
fi
same_json "GET /customer/1 after restart" '{"1": "Tom"}' "$(app -X GET "$(url 1)")"
same_json "GET /customer/2 after restart" '{"2": "Jerry"}' "$(app -X GET "$(url 2)")"

audit=$DEMO_DIR/logs/kms-audit.jsonl
attestations=$(grep '"event":"attestation"' "$audit" | grep -c '"verdict":"ok"' || true)
releases=$(grep -c '"event":"release"' "$audit" || true)
if [ "$attestations" = 2 ] && [ "$releases" = 6 ]; then
  ok "one attestation per boot, three releases per boot (2 boots)"
else
  fail "one attestation per boot, three releases per boot (2 boots)" \
    "attestations=$attestations releases=$releases in $audit"
fi
if verified=$("$ROOT/target/release/kms" audit verify "$audit" 2>&1); then
  ok "kms audit verify: the demo's audit log is an intact hash chain"
else
  fail "kms audit verify: the demo's audit log is an intact hash chain" "$verified"
fi

# No secret value, raw or base64, in any log.
leaks=0
for secret in "$DEMO_DIR/flask.key" "$DEMO_DIR/image_key"; do
  for needle in "$(base64 -w 0 "$secret")" "$(head -c 48 "$secret" | base64 -w 0 | head -c 40)" \
    "$(grep -v -- '-----' "$secret" | head -n 1)" "$(head -n 1 "$secret")"; do
    [ -n "$needle" ] || continue
    if grep -rqF -- "$needle" "$DEMO_DIR/logs" "$scratch"/*.log; then leaks=$((leaks + 1)); fi
  done
done
expect "no secret value in any log ($leaks found)" [ "$leaks" = 0 ]
expect "./run.sh stop" ./run.sh stop
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
