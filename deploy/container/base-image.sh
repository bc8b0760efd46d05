#!/usr/bin/env bash
# Build the container's base image from Debian packages when no image registry is reachable:
# a minimal bookworm (debootstrap minbase) with python3, python3-venv and ca-certificates,
# imported into Docker as $BASE_IMAGE (default tierless-base:bookworm). Does nothing when that
# image already exists, so CI builds it once per machine. Needs root and debootstrap.
#   BASE_IMAGE=name:tag  DEBIAN_MIRROR=http://deb.debian.org/debian  deploy/container/base-image.sh
set -euo pipefail

image="${BASE_IMAGE:-tierless-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image: present"
    exit 0
fi

root="$(mktemp -d /tmp/tierless-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "base image $image: debootstrap bookworm into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 20 "$root.log"; exit 1; }
rm -f "$root.log"
# What an image does not need: package lists, caches, docs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base image $image: imported"
