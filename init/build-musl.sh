#!/usr/bin/env bash
# Builds init for x86_64-unknown-linux-musl as the ELF Occlum's loader accepts, and checks it.
#
# Occlum refuses executables without an interpreter segment, and its initfs carries only musl's
# loader, libc.so and libgcc_s.so.1. So init must be a dynamically linked PIE with interpreter
# /lib/ld-musl-x86_64.so.1 whose NEEDED list is libc.so alone. Recipe (Debian's musl-tools):
# musl-gcc links, `-crt-static` makes the binary dynamic, and a `libgcc_s.so` linker script on
# the -L path points at Rust's own self-contained musl libunwind.a, so unwinding is linked in
# statically instead of needing libgcc_s at run time. All flags are scoped to the musl target,
# so host builds in the same target directory are untouched.
#
# The default build is the one Occlum runs: without the `simulation` feature, so it has no host
# mode and cannot trust a simulated root, and without `host-tools`, so it carries no image
# packer/unpacker; the checks below prove neither is in it.
# `--simulation` builds the host-mode init (demo, tests) into a separate target directory
# ($CARGO_TARGET_DIR/musl-simulation), so the Occlum artifact's path never holds it.
# On an Occlum host, link with Occlum's own musl toolchain instead (MUSL_CC=occlum-gcc, as
# build.sh does there): its musl is the one whose loader the enclave runs.
#
# Usage: init/build-musl.sh [--simulation]   (prints the binary's path on the last line)
# Env:   INIT_MAX_BYTES  size limit checked after the build (default 6 MiB)
#        MUSL_CC         the musl C compiler driver that links (default musl-gcc)
#        CARGO_TARGET_DIR as usual
set -euo pipefail

target=x86_64-unknown-linux-musl
interpreter=/lib/ld-musl-x86_64.so.1
max_bytes=${INIT_MAX_BYTES:-$((6 * 1024 * 1024))}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
workspace=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$workspace/target}

die() {
    echo "build-musl: $*" >&2
    exit 1
}

simulation=0
case "${1:-}" in
    "") ;;
    --simulation) simulation=1 ;;
    *) die "unknown argument $1 (usage: init/build-musl.sh [--simulation])" ;;
esac
features=()
build_dir=$target_dir
if [ "$simulation" = 1 ]; then
    features=(--features simulation)
    build_dir=$target_dir/musl-simulation
fi

musl_cc=${MUSL_CC:-musl-gcc}
command -v "$musl_cc" >/dev/null || die "$musl_cc not found (Debian: apt-get install musl-tools; Occlum: /opt/occlum/toolchains/gcc/bin/occlum-gcc)"
command -v readelf >/dev/null || die "readelf not found (Debian: apt-get install binutils)"
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
    die "Rust target $target not installed (rustup target add $target)"

unwind="$(rustc --print sysroot)/lib/rustlib/$target/lib/self-contained/libunwind.a"
[ -f "$unwind" ] || die "missing $unwind"

shim="$target_dir/musl-shim"
mkdir -p "$shim"
printf 'INPUT(%s)\n' "$unwind" >"$shim/libgcc_s.so"

export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=$musl_cc
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=-crt-static -L native=$shim"
export CC_x86_64_unknown_linux_musl=$musl_cc

(cd "$workspace" && CARGO_TARGET_DIR=$build_dir cargo build --release --locked --target "$target" -p init --bin init "${features[@]}") >&2

bin="$build_dir/$target/release/init"
[ -f "$bin" ] || die "no binary at $bin"

fail=0
check() {
    if [ "$2" = "$3" ]; then
        echo "build-musl: ok   $1: $2" >&2
    else
        echo "build-musl: FAIL $1: got '$2', want '$3'" >&2
        fail=1
    fi
}

elf_type=$(readelf -h "$bin" | awk -F: '/^ *Type:/ { gsub(/^ +/, "", $2); print $2 }')
check "ELF type" "${elf_type%% *}" "DYN"
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
check "interpreter" "$interp" "$interpreter"
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ' | sed 's/ $//')
check "NEEDED" "$needed" "libc.so"
pie=$(readelf -d "$bin" | grep -c 'FLAGS_1.*PIE' || true)
check "PIE flag" "$pie" "1"
symtab=$(readelf -S "$bin" | grep -c '\.symtab' || true)
check "stripped (.symtab sections)" "$symtab" "0"

# Strings only simulated-root code carries: init's host-mode anchor label and ratls's label for a
# non-Intel anchor (both exist only with the `simulation` feature).
markers=$(grep -a -c -e 'SIMULATED root CA of' -e 'NON-INTEL root' "$bin" || true)
if [ "$simulation" = 1 ]; then
    if [ "$markers" -gt 0 ]; then
        echo "build-musl: ok   simulation build carries the simulated-root code" >&2
    else
        echo "build-musl: FAIL simulation build lacks the simulated-root markers (the check would prove nothing)" >&2
        fail=1
    fi
else
    check "simulated-root code (marker strings)" "$markers" "0"
fi

# The host tools (the `host-tools` feature: image packer/unpacker with tar and AES-GCM, and
# `pack-image`): never in the Occlum build (in Occlum the LibOS mounts the rootfs itself); the
# --simulation build needs them for host mode. Run-checked where this host can run the binary.
host_tools=$workspace/occlum-configs/check-host-tools.sh
if [ "$simulation" = 1 ]; then
    "$host_tools" present init "$bin" >&2 || fail=1
elif [ -e "$interpreter" ]; then
    "$host_tools" absent init "$bin" --run >&2 || fail=1
else
    "$host_tools" absent init "$bin" >&2 || fail=1
fi

size=$(stat -c %s "$bin")
if [ "$size" -le "$max_bytes" ]; then
    echo "build-musl: ok   size: $size bytes ($((size / 1024)) KiB, limit $((max_bytes / 1024)) KiB)" >&2
else
    echo "build-musl: FAIL size: $size bytes, over the $max_bytes-byte limit" >&2
    fail=1
fi

if [ -e "$interpreter" ]; then
    if version=$("$bin" --version 2>&1); then
        echo "build-musl: ok   runs under $interpreter: $version" >&2
    else
        echo "build-musl: FAIL does not run under $interpreter: $version" >&2
        fail=1
    fi
else
    echo "build-musl: skip run check: $interpreter absent (Debian: apt-get install musl)" >&2
fi

[ "$fail" = 0 ] || die "checks failed for $bin"
echo "$bin"
