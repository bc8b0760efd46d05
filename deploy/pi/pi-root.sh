#!/usr/bin/env bash
# Build, once per machine, the Debian bookworm roots that `make pi-check` installs the gateway
# into: one per ARM architecture, run under qemu-user-static through binfmt_misc. Each root is
# what docs/operations.md (*Raspberry Pi*) asks a Pi for: debootstrap minbase plus the apt
# packages listed there for that architecture. A finished root is kept (marked by
# .tierless-pi-root) and reused; pi-check never writes into it (it runs on an overlay).
#   PI_ROOTS=/var/cache/tierless-pi  DEBIAN_MIRROR=http://deb.debian.org/debian \
#       deploy/pi/pi-root.sh arm64 armhf
# Prints "ARCH ROOT SECONDS" per architecture (0 seconds when the root was already there).
# Needs root, debootstrap and qemu-user-static.
set -euo pipefail

roots="${PI_ROOTS:-/var/cache/tierless-pi}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The apt packages of docs/operations.md: python3-venv brings venv and pip; on 32-bit ARM,
# msgspec and cffi have no wheel on PyPI, so pip builds them: gcc, python3-dev, libffi-dev.
base_pkgs="python3,python3-venv,ca-certificates"
build_pkgs="gcc,python3-dev,libffi-dev"

binfmt() {
    local qemu="$1"
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e "/proc/sys/fs/binfmt_misc/$qemu" ]; then
        update-binfmts --enable "$qemu" >/dev/null 2>&1 || true
    fi
    if ! grep -qx enabled "/proc/sys/fs/binfmt_misc/$qemu" 2>/dev/null; then
        echo "pi-root: binfmt_misc has no enabled $qemu entry (apt install qemu-user-static)" >&2
        exit 1
    fi
}

[ "$#" -gt 0 ] || set -- arm64 armhf
mkdir -p "$roots"
for arch in "$@"; do
    case "$arch" in
        arm64) binfmt qemu-aarch64; pkgs="$base_pkgs" ;;
        armhf) binfmt qemu-arm; pkgs="$base_pkgs,$build_pkgs" ;;
        *) echo "pi-root: unknown architecture $arch (arm64 or armhf)" >&2; exit 2 ;;
    esac
    root="$roots/bookworm-$arch"
    if [ -e "$root/.tierless-pi-root" ]; then
        echo "$arch $root 0"
        continue
    fi
    start=$(date +%s)
    rm -rf "$root.tmp"
    debootstrap --arch="$arch" --variant=minbase --include="$pkgs" \
        bookworm "$root.tmp" "$mirror" >"$root.log" 2>&1 ||
        { tail -n 20 "$root.log" >&2; exit 1; }
    rm -rf "$root.tmp"/var/cache/apt/archives/*.deb
    rm -rf "$root"
    mv "$root.tmp" "$root"
    echo "$pkgs" >"$root/.tierless-pi-root"
    echo "$arch $root $(( $(date +%s) - start ))"
done
