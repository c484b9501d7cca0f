#!/bin/bash
# clickhouse/clickhouse-server runs this once, on the first start with an empty data
# directory: the read-only user of the gateway and of Grafana, as `vmpulse reader-grants`
# rendered it (infra/compose/init.sh), applied by the administrator CLICKHOUSE_USER.
set -euo pipefail
clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" \
  --multiquery < /run/vmpulse-secrets/reader_grants.sql
