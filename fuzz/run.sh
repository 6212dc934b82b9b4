#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each with libFuzzer, seeded with the
# project's test vectors. Usage: fuzz/run.sh SECONDS [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  case "$t" in
    quote) cp ../ratls/testdata/dcap-sample/sgx_quote "corpus/$t/" ;;
    cert) cp ../ratls/testdata/ratls-interop/*.pem "corpus/$t/" ;;
    policy) find ../ratls/testdata -name '*.json' -size -64k -exec cp {} "corpus/$t/" \; ;;
    # SecretReply { secret: "\"<base64 of an image key>\"" }, as Occlum's KMS sends it.
    secret_reply) printf '\x0a\x42"YTUtNmQtN2YtY2YtYWUtOTMtZTItMWYtNWItOGEtODMtM2YtNzktNzgtMjktZmYK"' \
        >"corpus/$t/image_key_reply" ;;
    secret_store) printf '{"k": "dmFsdWU=", "acl": {"value": "YTUtNmQK", "allow": ["app"]}}' \
        >"corpus/$t/with_acl" ;;
    # A state plaintext (first byte: which byte of its sealed record the target alters).
    state_envelope) printf '\x05{"policy":{},"secrets":{"k":"dmFsdWU="}}' >"corpus/$t/state" ;;
    # Answers of etcd 3.4's JSON gateway, as recorded (kms/src/cluster/etcd.rs tests).
    etcd_gateway)
      printf '%s' '{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}' >"corpus/$t/range"
      printf '%s' '{"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","value":"YmFy"}]}}]}' >"corpus/$t/txn_conflict"
      printf '%s' '{"result":{"header":{"revision":"2"},"events":[{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"2"}}]}}' >"corpus/$t/watch_event"
      printf 'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked' >"corpus/$t/head" ;;
    # A GetClusterKey reply (kms/src/cluster/keywire.rs tests' form).
    key_reply) printf '%s' '{"cluster_id":"fuzz","epoch":1,"gen":7,"state_sha256_hex":"0606060606060606060606060606060606060606060606060606060606060606","key_b64":"BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU="}' >"corpus/$t/reply" ;;
    # init host's command line, arguments separated by NUL bytes.
    argv) printf 'host\0--config-dir=c\0--sim-platform\0p\0--\0/bin/app' >"corpus/$t/host" ;;
    # SecretRequest { name: "image_key" }.
    kms_request) printf '\x0a\x09image_key' >"corpus/$t/image_key_request" ;;
    metrics_request) printf 'GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n' >"corpus/$t/get_metrics" ;;
    # First byte odd: the readiness callback says ready; then a kubelet probe.
    health_request) printf '\x01GET /readyz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.30\r\n\r\n' >"corpus/$t/probe" ;;
    # First byte: the client's read size; then a GET and a pipelined form PUT.
    app_http) printf '\x07GET /customer/1 HTTP/1.1\r\nHost: x\r\n\r\nPUT /customer/2 HTTP/1.1\r\nContent-Length: 8\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\ndata=Tom' \
        >"corpus/$t/get_and_put" ;;
    # First byte odd: the rest is a tar archive that the target seals as an image.
    image_unpack)
      seed=$(mktemp -d)
      mkdir -p "$seed/bin" && printf 'hi\n' >"$seed/bin/app" && ln -sf ../bin/app "$seed/link"
      { printf '\x01'; tar -C "$seed" --format=ustar -cf - bin link; } >"corpus/$t/small_tree"
      rm -rf "$seed" ;;
    # The sample collateral as the four PCCS answers (body, percent-encoded issuer chain).
    pccs_response) python3 - ../ratls/testdata/dcap-sample/sgx_quote_collateral.json \
        >"corpus/$t/sample" <<'PY'
import json, struct, sys, urllib.parse
c = json.load(open(sys.argv[1]))
def answer(body, chain=None):
    head = b"" if chain is None else urllib.parse.quote(chain).encode()
    return (struct.pack("<H", len(body)) + body
            + struct.pack("<H", 0xFFFF if chain is None else len(head)) + head)
def signed(field, obj, sig):
    return ('{"%s":%s,"signature":"%s"}' % (field, obj, sig)).encode()
sys.stdout.buffer.write(
    answer(bytes.fromhex(c["pck_crl"]), c["pck_crl_issuer_chain"])
    + answer(signed("tcbInfo", c["tcb_info"], c["tcb_info_signature"]), c["tcb_info_issuer_chain"])
    + answer(signed("enclaveIdentity", c["qe_identity"], c["qe_identity_signature"]),
             c["qe_identity_issuer_chain"])
    + answer(c["root_ca_crl"].encode()))
PY
      ;;
  esac
  echo "== fuzz target $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 \
    | grep -E '^(#[0-9]+ +DONE|Done|INFO: -max_total_time|==[0-9]+==|SUMMARY|artifact_prefix)' || true
  if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "FAIL: $t left crash artifacts in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
