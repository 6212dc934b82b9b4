#!/usr/bin/env bash
# Checks whether a kms or init binary carries the host-only tools (the `host-tools` feature):
# kms's seal, unseal, gen-seal-key, gen-cert, gen-image-key and `admin` (the operator's client
# of the admin API; the admin server stays in); init's image packer/unpacker (tar and AES-GCM
# STREAM) and `pack-image`. The binaries that run in Occlum must not (`absent`); the
# host builds must (`present`), which also proves the markers below still find the code, so the
# `absent` check cannot pass by having gone stale.
#
# Markers are strings only the gated code carries: kms's "kms: sealed " (seal's report),
# "gen-image-key needs" (its usage error), "kms: add this entry to" (`kms admin keygen`'s
# report) and "failed attestation under --ra-config" (`kms admin`'s refusal of a KMS); init's
# image format magic "INITRFS" and "pack-image needs" (its usage error). `absent` wants none of
# them, `present` every one. With --run, an `absent` binary is also run with each tool's command
# line and must refuse it as not in this build (exit 2); `present` is not run.
#
# Usage: occlum-configs/check-host-tools.sh absent|present kms|init BINARY [--run]
set -euo pipefail

die() {
  echo "check-host-tools: $*" >&2
  exit 1
}

[ $# -ge 3 ] || die "usage: check-host-tools.sh absent|present kms|init BINARY [--run]"
want=$1 kind=$2 bin=$3 run=${4:-}
[ -f "$bin" ] || die "no binary at $bin"
# Each probe is one command line, its words separated by spaces (no path has a space).
case "$kind" in
  kms)
    markers=('kms: sealed ' 'gen-image-key needs' 'kms: add this entry to' 'failed attestation under --ra-config')
    probes=('gen-image-key --out /nonexistent/image_key'
      'admin keygen --name x --out-cert /nonexistent/c.pem --out-key /nonexistent/k.pem'
      'admin status --kms 127.0.0.1:1 --cert /nonexistent/c --key /nonexistent/k --ra-config /nonexistent/p')
    ;;
  init)
    markers=('INITRFS' 'pack-image needs')
    probes=('pack-image --integrity-only --in /nonexistent --out /nonexistent/img')
    ;;
  *) die "unknown kind $kind (kms or init)" ;;
esac

case "$want" in
  absent)
    for marker in "${markers[@]}"; do
      found=$(grep -a -c -F -e "$marker" "$bin" || true)
      [ "$found" = 0 ] || die "FAIL $bin carries the host tools ($found lines with \"$marker\"); build it without the host-tools feature"
    done
    if [ "$run" = --run ]; then
      for probe in "${probes[@]}"; do
        read -r -a words <<<"$probe"
        set +e
        out=$("$bin" "${words[@]}" 2>&1)
        status=$?
        set -e
        if [ "$status" != 2 ] || [[ "$out" != *"not in this build"* ]]; then
          die "FAIL $bin $probe: want exit 2 and \"not in this build\", got exit $status: $out"
        fi
      done
    fi
    echo "check-host-tools: ok   $bin ($kind) has no host tools${run:+ (and refuses ${#probes[@]} tool command lines as not in this build)}"
    ;;
  present)
    for marker in "${markers[@]}"; do
      grep -a -q -F -e "$marker" "$bin" ||
        die "FAIL $bin lacks the host-tool marker \"$marker\": the absent check would prove nothing"
    done
    echo "check-host-tools: ok   $bin ($kind) carries the host tools (all ${#markers[@]} markers found, so the absent check can see them)"
    ;;
  *) die "unknown check $want (absent or present)" ;;
esac
