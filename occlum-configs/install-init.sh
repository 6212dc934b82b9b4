#!/usr/bin/env bash
# Installs our init where `occlum new --init-ra grpc_ratls` copies it from
# ($OCCLUM_DIR/build/bin/init_grpc_ratls, per tools/occlum at Occlum v0.31), keeping the original
# as init_grpc_ratls.orig. `install-init.sh --restore` puts the original back.
#
# Usage: occlum-configs/install-init.sh [--restore] [INIT_BINARY]
# Env:   OCCLUM_DIR (default /opt/occlum)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
occlum_dir=${OCCLUM_DIR:-/opt/occlum}
dst=$occlum_dir/build/bin/init_grpc_ratls

die() { echo "install-init: $*" >&2; exit 1; }

[ -d "$occlum_dir/build/bin" ] || die "$occlum_dir/build/bin does not exist: set OCCLUM_DIR to Occlum's install prefix"

if [ "${1:-}" = --restore ]; then
  [ -f "$dst.orig" ] || die "no backup at $dst.orig"
  mv -f "$dst.orig" "$dst"
  echo "restored Occlum's original init to $dst"
  exit 0
fi

src=${1:-$here/../target/x86_64-unknown-linux-musl/release/init}
[ -f "$src" ] || die "no init binary at $src: build it with init/build-musl.sh"
# Occlum's loader needs an interpreter segment (musl's loader); refuse anything else.
readelf -l "$src" | grep -q 'Requesting program interpreter: /lib/ld-musl-x86_64.so.1' ||
  die "$src is not a dynamic musl PIE (build it with init/build-musl.sh)"

if [ -f "$dst" ] && [ ! -f "$dst.orig" ]; then
  cp -p "$dst" "$dst.orig"
  echo "backed up Occlum's init to $dst.orig"
fi
install -m 0755 "$src" "$dst"
echo "installed $src as $dst"
echo "new instances get it: occlum new <dir> --init-ra grpc_ratls   (undo: $0 --restore)"
