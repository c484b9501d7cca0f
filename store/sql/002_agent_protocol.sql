-- Everything a guest agent reports, both dialects (issue 3; docs/PROTOCOL_VALIDATION.md).
-- Every table: vm_id and ts first (ts is the series time, agent_ts what the agent
-- said, ts_source which of agent/received the series uses), and the source
-- record's kafka_partition/kafka_offset last: the worker keeps a watermark per
-- table and partition, so a replay after a crash stores nothing twice.
-- Raw data lives 30 days; rollups (other migrations) keep the long history.

-- system_metrics (001) gains the rest of the sample. Figures an agent did not
-- report are NULL, not 0: a 0 % CPU reading and "no reading" must differ.
ALTER TABLE system_metrics MODIFY COLUMN cpu_usage_percent Nullable(Float32) CODEC(Gorilla, ZSTD(1));
ALTER TABLE system_metrics MODIFY COLUMN memory_used_kb Nullable(UInt64) CODEC(T64, ZSTD(1));
ALTER TABLE system_metrics MODIFY COLUMN memory_total_kb Nullable(UInt64) CODEC(T64, ZSTD(1));
ALTER TABLE system_metrics
    ADD COLUMN IF NOT EXISTS agent_ts Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)) AFTER received_at,
    ADD COLUMN IF NOT EXISTS ts_source LowCardinality(String) DEFAULT 'agent' AFTER agent_ts,
    ADD COLUMN IF NOT EXISTS dialect UInt8 DEFAULT 1 CODEC(ZSTD(1)) AFTER ts_source,
    ADD COLUMN IF NOT EXISTS cpu_cores_usage Array(Float32) CODEC(ZSTD(1)) AFTER cpu_usage_percent,
    ADD COLUMN IF NOT EXISTS cpu_temperature Nullable(Float32) CODEC(Gorilla, ZSTD(1)) AFTER cpu_cores_usage,
    ADD COLUMN IF NOT EXISTS memory_available_kb Nullable(UInt64) CODEC(T64, ZSTD(1)) AFTER memory_total_kb,
    ADD COLUMN IF NOT EXISTS swap_total_kb Nullable(UInt64) CODEC(T64, ZSTD(1)) AFTER memory_available_kb,
    ADD COLUMN IF NOT EXISTS swap_used_kb Nullable(UInt64) CODEC(T64, ZSTD(1)) AFTER swap_total_kb,
    ADD COLUMN IF NOT EXISTS disk_read_bytes_per_sec Nullable(UInt64) CODEC(T64, ZSTD(1)) AFTER swap_used_kb,
    ADD COLUMN IF NOT EXISTS disk_write_bytes_per_sec Nullable(UInt64) CODEC(T64, ZSTD(1)) AFTER disk_read_bytes_per_sec,
    ADD COLUMN IF NOT EXISTS disk_read_ops_per_sec Nullable(UInt64) CODEC(T64, ZSTD(1)) AFTER disk_write_bytes_per_sec,
    ADD COLUMN IF NOT EXISTS disk_write_ops_per_sec Nullable(UInt64) CODEC(T64, ZSTD(1)) AFTER disk_read_ops_per_sec,
    ADD COLUMN IF NOT EXISTS uptime_seconds Nullable(Float64) CODEC(Delta, ZSTD(1)) AFTER disk_write_ops_per_sec,
    ADD COLUMN IF NOT EXISTS load_1min Nullable(Float32) CODEC(Gorilla, ZSTD(1)) AFTER uptime_seconds,
    ADD COLUMN IF NOT EXISTS load_5min Nullable(Float32) CODEC(Gorilla, ZSTD(1)) AFTER load_1min,
    ADD COLUMN IF NOT EXISTS load_15min Nullable(Float32) CODEC(Gorilla, ZSTD(1)) AFTER load_5min;

-- One row per mount point and sample.
CREATE TABLE IF NOT EXISTS disk_usage
(
    vm_id           LowCardinality(String),
    ts              DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    agent_ts        Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    ts_source       LowCardinality(String),
    mount_point     LowCardinality(String),
    filesystem      LowCardinality(Nullable(String)),
    total_gb        Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    used_gb         Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    available_gb    Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    kafka_partition UInt16,
    kafka_offset    UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vm_id, mount_point, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per network interface and sample; counters as the agent reports them.
CREATE TABLE IF NOT EXISTS network_interfaces
(
    vm_id            LowCardinality(String),
    ts               DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at      DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    agent_ts         Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    ts_source        LowCardinality(String),
    interface        LowCardinality(String),
    bytes_received   Nullable(UInt64) CODEC(T64, ZSTD(1)),
    bytes_sent       Nullable(UInt64) CODEC(T64, ZSTD(1)),
    packets_received Nullable(UInt64) CODEC(T64, ZSTD(1)),
    packets_sent     Nullable(UInt64) CODEC(T64, ZSTD(1)),
    errors_in        Nullable(UInt64) CODEC(T64, ZSTD(1)),
    errors_out       Nullable(UInt64) CODEC(T64, ZSTD(1)),
    is_up            Nullable(Bool),
    ip_addresses     Array(String) CODEC(ZSTD(1)),
    kafka_partition  UInt16,
    kafka_offset     UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vm_id, interface, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per process and snapshot (dialect 1 process_snapshot, dialect 2 metrics).
CREATE TABLE IF NOT EXISTS process_snapshots
(
    vm_id             LowCardinality(String),
    ts                DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    agent_ts          Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    ts_source         LowCardinality(String),
    pid               UInt32 CODEC(ZSTD(1)),
    parent_pid        Nullable(UInt32) CODEC(ZSTD(1)),
    name              LowCardinality(String),
    executable_path   Nullable(String) CODEC(ZSTD(3)),
    command_line      Nullable(String) CODEC(ZSTD(3)),
    cpu_usage_percent Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    memory_usage_kb   Nullable(UInt64) CODEC(T64, ZSTD(1)),
    status            LowCardinality(Nullable(String)),
    user              LowCardinality(Nullable(String)),
    start_time        Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    kafka_partition   UInt16,
    kafka_offset      UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vm_id, ts, pid)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per port and snapshot (dialect 1 port_usage, dialect 2 metrics).
CREATE TABLE IF NOT EXISTS port_usage
(
    vm_id           LowCardinality(String),
    ts              DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    agent_ts        Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    ts_source       LowCardinality(String),
    port            UInt16,
    protocol        LowCardinality(String),
    state           LowCardinality(Nullable(String)),
    process_id      Nullable(UInt32) CODEC(ZSTD(1)),
    process_name    LowCardinality(Nullable(String)),
    is_listening    Nullable(Bool),
    kafka_partition UInt16,
    kafka_offset    UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vm_id, ts, port)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per application and report (dialect 1 application_usage).
CREATE TABLE IF NOT EXISTS application_usage
(
    vm_id           LowCardinality(String),
    ts              DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    agent_ts        Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    ts_source       LowCardinality(String),
    name            LowCardinality(String),
    executable_path Nullable(String) CODEC(ZSTD(3)),
    version         LowCardinality(Nullable(String)),
    publisher       LowCardinality(Nullable(String)),
    is_running      Nullable(Bool),
    usage_count     Nullable(UInt32) CODEC(T64, ZSTD(1)),
    usage_minutes   Nullable(Float64) CODEC(Gorilla, ZSTD(1)),
    last_used       Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    kafka_partition UInt16,
    kafka_offset    UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vm_id, ts, name)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- What agents say about themselves: hellos (vm_identification / handshake),
-- errors, error reports, agent events, pending-script requests, command
-- results and script completions. kind tells which; details is JSON text.
CREATE TABLE IF NOT EXISTS agent_events
(
    vm_id             LowCardinality(String),
    ts                DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    agent_ts          Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    ts_source         LowCardinality(String),
    kind              LowCardinality(String),
    message_type      LowCardinality(String),
    severity          LowCardinality(String),
    source            LowCardinality(Nullable(String)),
    message           String CODEC(ZSTD(3)),
    execution_id      Nullable(String) CODEC(ZSTD(1)),
    command_id        Nullable(String) CODEC(ZSTD(1)),
    success           Nullable(Bool),
    exit_code         Nullable(Int64) CODEC(ZSTD(1)),
    stdout            Nullable(String) CODEC(ZSTD(3)),
    stderr            Nullable(String) CODEC(ZSTD(3)),
    execution_time_ms Nullable(UInt64) CODEC(ZSTD(1)),
    command_type      LowCardinality(Nullable(String)),
    details           Nullable(String) CODEC(ZSTD(3)),
    hostname          LowCardinality(Nullable(String)),
    os                LowCardinality(Nullable(String)),
    agent_version     LowCardinality(Nullable(String)),
    platform          LowCardinality(Nullable(String)),
    capabilities      Array(LowCardinality(String)),
    kafka_partition   UInt16,
    kafka_offset      UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vm_id, ts, kind)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;
