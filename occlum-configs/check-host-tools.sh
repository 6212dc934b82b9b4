#!/usr/bin/env bash
# Checks whether a kms or init binary carries the host-only tools (the `host-tools` feature):
# kms's seal, unseal, gen-seal-key, gen-cert, gen-image-key; init's image packer/unpacker (tar
# and AES-GCM STREAM) and `pack-image`. The binaries that run in Occlum must not (`absent`); the
# host builds must (`present`), which also proves the markers below still find the code, so the
# `absent` check cannot pass by having gone stale.
#
# Markers are strings only the gated code carries: kms's "kms: sealed " (seal's report) and
# "gen-image-key needs" (its usage error); init's image format magic "INITRFS" and
# "pack-image needs" (its usage error). With --run, an `absent` binary is also run with the
# tool's command line and must refuse it as not in this build (exit 2); `present` is not run.
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
case "$kind" in
  kms) markers=('kms: sealed ' 'gen-image-key needs') probe=(gen-image-key --out /nonexistent/image_key) ;;
  init) markers=('INITRFS' 'pack-image needs') probe=(pack-image --integrity-only --in /nonexistent --out /nonexistent/img) ;;
  *) die "unknown kind $kind (kms or init)" ;;
esac

found=$(grep -a -c -F -e "${markers[0]}" -e "${markers[1]}" "$bin" || true)
shown="\"${markers[0]}\", \"${markers[1]}\""
case "$want" in
  absent)
    [ "$found" = 0 ] || die "FAIL $bin carries the host tools ($found marker lines: $shown); build it without the host-tools feature"
    if [ "$run" = --run ]; then
      set +e
      out=$("$bin" "${probe[@]}" 2>&1)
      status=$?
      set -e
      if [ "$status" != 2 ] || [[ "$out" != *"not in this build"* ]]; then
        die "FAIL $bin ${probe[*]}: want exit 2 and \"not in this build\", got exit $status: $out"
      fi
    fi
    echo "check-host-tools: ok   $bin ($kind) has no host tools${run:+ (and refuses ${probe[0]} as not in this build)}"
    ;;
  present)
    [ "$found" -gt 0 ] || die "FAIL $bin lacks the host-tool markers ($shown): the absent check would prove nothing"
    echo "check-host-tools: ok   $bin ($kind) carries the host tools (markers found, so the absent check can see them)"
    ;;
  *) die "unknown check $want (absent or present)" ;;
esac
