#!/bin/bash
# The compose stack's first step (service `init`, run once per start): make the secrets
# that are missing, in the `secrets` volume, which the other services mount read-only.
# Random values, never printed; kept across restarts (delete the volume to renew them).
# Also renders the read-only ClickHouse user's grants for the server's first start
# (infra/clickhouse/initdb/10-reader.sh applies them).
set -euo pipefail
umask 022
dir=/run/vmpulse-secrets
cd "$dir"
new() {  # new NAME: a random 256-bit hex value, when the file is missing
  [ -s "$1" ] || python3 -c 'import secrets; print(secrets.token_hex(32))' > "$1"
}
new jwt_secret
new agent_secret
new clickhouse_password
new reader_password
new grafana_admin_password
# URLs with passwords, as VMPULSE_CLICKHOUSE_URL_FILE and VMPULSE_CLICKHOUSE_READ_URL_FILE
printf 'http://vmpulse:%s@clickhouse:8123/vmpulse\n' "$(cat clickhouse_password)" > clickhouse_url
printf 'http://vmpulse_reader:%s@clickhouse:8123/vmpulse\n' "$(cat reader_password)" > read_url
VMPULSE_CLICKHOUSE_READ_URL_FILE="$dir/read_url" vmpulse reader-grants > reader_grants.sql
# readable by the services' own users (vmpulse 10001, clickhouse 101, grafana 472)
chmod 0444 ./*
echo "secrets ready in the volume (values not shown)"
