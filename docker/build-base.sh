#!/usr/bin/env bash
# A stand-in for python:3.11-slim, built from Debian's packages when no image registry is reachable:
# Debian bookworm (minbase) + python3 (3.11) + python3-venv, with a venv at /opt/venv first on PATH
# so `python` and `pip` work as in the official image. Imported as $BASE_TAG (studio-base:local).
#
#   docker/build-base.sh            # build (or reuse) studio-base:local
#   docker build --build-arg BASE_IMAGE=studio-base:local -t image-studio .
#
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker daemon. The host's
# extra certificate authorities (/usr/local/share/ca-certificates/*.crt) are trusted in the base
# too, and pip is pointed at the system bundle (PIP_CERT), so `pip install` in the build works
# behind the same TLS-inspecting proxy as the host. The rootfs tarball is cached in $BASE_CACHE
# keyed by this script's and those certificates' hash, so a second run only re-imports it (or does
# nothing when the image with that key is already loaded).
set -euo pipefail

BASE_TAG=${BASE_TAG:-studio-base:local}
BASE_CACHE=${BASE_CACHE:-/var/cache/image-studio}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
EXTRA_CAS=$(find /usr/local/share/ca-certificates -name '*.crt' 2>/dev/null | sort)
KEY=$(cat "$0" $EXTRA_CAS | sha256sum | cut -c1-16)
TARBALL="$BASE_CACHE/base-$SUITE-$KEY.tar"

if [ "$(docker image inspect --format '{{index .Config.Labels "studio.base.key"}}' "$BASE_TAG" 2>/dev/null)" = "$KEY" ]; then
  echo "build-base: $BASE_TAG is up to date (key $KEY)"
  exit 0
fi

if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    echo "build-base: installing debootstrap" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  mkdir -p "$BASE_CACHE"
  WORK=$(mktemp -d "$BASE_CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  echo "build-base: debootstrap $SUITE into $WORK (a few minutes, once)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; echo "build-base: debootstrap failed" >&2; exit 1; }
  R="$WORK/rootfs"
  for ca in $EXTRA_CAS; do
    mkdir -p "$R/usr/local/share/ca-certificates"
    cp "$ca" "$R/usr/local/share/ca-certificates/"
  done
  chroot "$R" /usr/sbin/update-ca-certificates >/dev/null
  chroot "$R" /usr/bin/python3 -m venv /opt/venv
  # Slim like the official image: no apt lists, docs or caches.
  rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb \
         "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/*
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$R/etc/apt/sources.list"
  : >"$R/etc/resolv.conf"
  tar -C "$R" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  # Older keys' tarballs are stale.
  find "$BASE_CACHE" -maxdepth 1 -name "base-$SUITE-*.tar" ! -name "$(basename "$TARBALL")" -delete
fi

echo "build-base: importing $TARBALL as $BASE_TAG" >&2
docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV VIRTUAL_ENV=/opt/venv LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change "LABEL studio.base.key=$KEY" \
  --change 'CMD ["python"]' \
  "$TARBALL" "$BASE_TAG" >/dev/null
docker run --rm "$BASE_TAG" python -c 'import sys, venv, ssl; assert sys.version_info[:2] == (3, 11), sys.version'
echo "build-base: $BASE_TAG ready (key $KEY)"
