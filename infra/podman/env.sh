# Sourced by the scripts beside it: podman reads this directory's containers.conf, not the
# machine's, so nothing outside the repository is edited (DESIGN.md, Containers).
VMPULSE_PODMAN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="$VMPULSE_PODMAN_DIR/containers.conf"
