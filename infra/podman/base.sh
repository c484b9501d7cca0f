#!/usr/bin/env bash
# A stand-in for the official python:3.11-slim-bookworm image, for machines that reach
# Debian's packages but no container registry: Debian 12 minbase with python3 (3.11), venv
# and pip, built by mmdebstrap from this machine's apt sources (read from /etc/apt) and
# imported into podman. The machine's extra CA certificates go into the root file system,
# and the usual variables point pip, npm and Python at the system bundle, so the build
# stages reach PyPI, npm and Maven Central through whatever this machine trusts.
#
# usage: infra/podman/base.sh [TAG]     (default localhost/vmpulse-base:bookworm)
# Keyed by content: the tag carries a label with the hash of this script, the apt sources and
# the CA certificates; when an image with that hash exists nothing is rebuilt.
set -euo pipefail
source "$(dirname "$0")/env.sh"
TAG="${1:-localhost/vmpulse-base:bookworm}"
PACKAGES="python3,python3-venv,ca-certificates,debian-archive-keyring"

work="$(mktemp -d /var/tmp/vmpulse-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# The machine's enabled apt sources, one deb822 or one-line file each (disabled ones end in
# another suffix and are left out).
sources=()
[ -s /etc/apt/sources.list ] && sources+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || { echo "no apt sources in /etc/apt" >&2; exit 1; }
certs=()
for f in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$f" ] && certs+=("$f")
done

key="$(cat "$0" "${sources[@]}" ${certs[@]+"${certs[@]}"} | sha256sum | cut -c1-16)"
if [ "$(podman image inspect --format '{{ index .Labels "vmpulse.base.key" }}' "$TAG" 2>/dev/null)" = "$key" ]; then
  echo "base image $TAG is current ($key)"
  exit 0
fi

mkdir "$work/certs"
[ ${#certs[@]} -eq 0 ] || cp "${certs[@]}" "$work/certs/"
echo "building $TAG from ${sources[*]} ..."
# mmdebstrap pastes each existing file given as a mirror into the root's apt sources.
# no manuals, docs or translations, as in the official slim images (kept for later installs)
mmdebstrap --variant=minbase --quiet --include="$PACKAGES" \
  --dpkgopt="path-exclude=/usr/share/man/*" --dpkgopt="path-exclude=/usr/share/doc/*" \
  --dpkgopt="path-include=/usr/share/doc/*/copyright" --dpkgopt="path-exclude=/usr/share/locale/*" \
  --customize-hook="cp $work/certs/. \"\$1/usr/local/share/ca-certificates/\" -r" \
  --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$work/rootfs.tar" "${sources[@]}"

bundle=/etc/ssl/certs/ca-certificates.crt
podman import --quiet \
  --change "LABEL vmpulse.base.key=$key" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change "ENV PIP_CERT=$bundle" \
  --change "ENV SSL_CERT_FILE=$bundle" \
  --change "ENV REQUESTS_CA_BUNDLE=$bundle" \
  --change "ENV NODE_EXTRA_CA_CERTS=$bundle" \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$TAG" >/dev/null
echo "base image $TAG ($key): $(podman image inspect --format '{{.Size}}' "$TAG") bytes"
