#!/usr/bin/env bash
# Checks that glibc-linked binaries load under Occlum's glibc: the highest GLIBC_x.y symbol
# version each binary needs must be one that Occlum's libc.so.6 defines. A binary linked on a
# newer host (Debian 12: glibc 2.36, so e.g. __libc_start_main@GLIBC_2.34) fails to load in an
# Occlum image (Occlum v0.31 ships glibc 2.31) with "version `GLIBC_2.34' not found".
#
# Usage: occlum-configs/check-glibc.sh [--glibc LIBC_SO | --max X.Y] BINARY...
#   --glibc  the libc.so.6 to check against (default /opt/occlum/glibc/lib/libc.so.6)
#   --max    the glibc version to check against, instead of reading a libc.so.6
set -euo pipefail

die() { echo "check-glibc: $*" >&2; exit 1; }

libc=/opt/occlum/glibc/lib/libc.so.6
max=
while [ $# -gt 0 ]; do
  case "$1" in
    --glibc) libc=${2:?--glibc needs a path}; shift 2 ;;
    --max) max=${2:?--max needs a version}; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || die "usage: check-glibc.sh [--glibc LIBC_SO | --max X.Y] BINARY..."
command -v readelf >/dev/null || die "readelf not found (Debian: apt-get install binutils)"

# highest VERSIONS: the highest GLIBC_x.y in VERSIONS (one per line).
highest() { grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -V | tail -n 1; }

if [ -z "$max" ]; then
  [ -e "$libc" ] || die "Occlum's glibc not found at $libc (is Occlum installed? pass --glibc or --max)"
  # The version definitions (.gnu.version_d) of libc.so.6 name every GLIBC_x.y it provides.
  max=$(readelf -V --wide "$libc" | sed -n '/Version definition section/,/Version needs section/p' | highest)
  [ -n "$max" ] || die "no GLIBC_ version definitions in $libc"
  origin="Occlum's glibc $libc"
else
  origin="--max"
fi

fail=0
for bin in "$@"; do
  [ -f "$bin" ] || die "no binary at $bin"
  # The version needs (.gnu.version_r) of the binary: what it requires of libc.
  need=$(readelf -V --wide "$bin" | sed -n '/Version needs section/,$p' | highest || true)
  if [ -z "$need" ]; then
    echo "check-glibc: ok   $bin needs no GLIBC_ symbol version" >&2
  elif [ "$(printf '%s\n%s\n' "$need" "$max" | sort -V | tail -n 1)" = "$max" ]; then
    echo "check-glibc: ok   $bin needs GLIBC_$need, $origin provides up to GLIBC_$max" >&2
  else
    symbols=$(readelf --dyn-syms --wide "$bin" | grep -o "[A-Za-z0-9_]*@GLIBC_$need" | sort -u | head -n 3 | tr '\n' ' ')
    echo "check-glibc: FAIL $bin needs GLIBC_$need (${symbols% }), but $origin provides only up to GLIBC_$max:" >&2
    echo "             it will not load in the enclave. Build on a host whose glibc is at most $max" >&2
    echo "             (Occlum's own image occlum/occlum:<version>-ubuntu20.04 has 2.31)." >&2
    fail=1
  fi
done
exit "$fail"
