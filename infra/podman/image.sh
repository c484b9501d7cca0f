#!/usr/bin/env bash
# Builds, with podman, what the container test (tests/image/) and the local compose stack
# (infra/compose.local.yaml) run:
#   localhost/vmpulse-base:bookworm   base.sh: the stand-in for python:3.11-slim-bookworm
#   localhost/vmpulse:dev             infra/Dockerfile, on that base
#   localhost/vmpulse-kafka:dev       infra/kafka/Dockerfile: the stand-in for apache/kafka
# Installs podman first if missing (install.sh). One build at a time (the machine is small).
# Caching is by content only: podman's layer cache (an instruction and the files it copies),
# and cache mounts for pip's, npm's and Maven's downloads; nothing built on the host is
# copied in.
# usage: infra/podman/image.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash infra/podman/install.sh
source infra/podman/env.sh

BASE=localhost/vmpulse-base:bookworm
build() {  # build TAG DOCKERFILE: rebuild, then drop the image the tag named before, if unused
  local tag="$1" file="$2" before after started
  before="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  started=$SECONDS
  podman build --quiet --format docker --layers --build-arg "BASE=$BASE" \
    -f "$file" -t "$tag" . >/dev/null
  after="$(podman image inspect --format '{{.Id}}' "$tag")"
  if [ -n "$before" ] && [ "$before" != "$after" ]; then
    podman rmi "$before" >/dev/null 2>&1 || true
  fi
  echo "$tag: $((SECONDS - started)) s, $(podman image inspect --format '{{.Size}}' "$tag") bytes"
}

started=$SECONDS
bash infra/podman/base.sh "$BASE"
echo "base: $((SECONDS - started)) s"
build localhost/vmpulse:dev infra/Dockerfile
build localhost/vmpulse-kafka:dev infra/kafka/Dockerfile
