-- Raw system samples, one row per accepted metrics message.
-- kafka_partition/kafka_offset keep the source position with the row, so a
-- replay after a crash can be recognised and nothing is stored twice.
CREATE TABLE IF NOT EXISTS system_metrics
(
    vm_id             LowCardinality(String),
    ts                DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    cpu_usage_percent Float32 CODEC(Gorilla, ZSTD(1)),
    memory_used_kb    UInt64 CODEC(T64, ZSTD(1)),
    memory_total_kb   UInt64 CODEC(T64, ZSTD(1)),
    kafka_partition   UInt16,
    kafka_offset      UInt64 CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vm_id, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;
