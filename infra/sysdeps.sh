#!/usr/bin/env bash
# System packages vmpulse needs on a Debian machine: Java + Maven (the local Kafka broker)
# and libvirt's headers + pkg-config (the libvirt-python build; its test driver runs
# in-process, no daemon); Node.js + npm (the TypeScript client and the dashboard's build)
# and Chromium (the browser tests: Playwright drives /usr/bin/chromium, it cannot download
# a browser of its own). `sysdeps.sh bench` adds what `make bench` compares against: kcat
# (the bridge's peer). Installs only what is missing; needs root (or sudo) to install.
set -euo pipefail
missing=()
if [ "${1:-}" = bench ]; then
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
fi
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists libvirt 2>/dev/null || missing+=(libvirt-dev)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
