-- 1-minute and 1-hour rollups of system_metrics, fed by materialized views and
-- cascaded: raw -> 1m (MV on system_metrics inserts) -> 1h (MV on 1m inserts).
-- A rollup row holds aggregate states; read them with the -Merge combinators
-- (avgMerge(cpu_avg), quantileMerge(0.95)(cpu_p95), max(cpu_max), sum(samples))
-- grouped by vm_id and bucket: parts merge in the background, not on insert.
-- The MVs see exactly the blocks inserted into system_metrics; the worker never
-- re-inserts stored offsets (Watermarks), so a replay adds nothing here either.
-- Retention (TTL) is set again at start from settings (streams/retention.py).
CREATE TABLE IF NOT EXISTS system_metrics_1m
(
    vm_id          LowCardinality(String),
    bucket         DateTime('UTC') CODEC(Delta, ZSTD(1)),
    cpu_avg        AggregateFunction(avg, Float32),
    cpu_max        SimpleAggregateFunction(max, Float32),
    cpu_p95        AggregateFunction(quantile(0.95), Float32),
    memory_avg     AggregateFunction(avg, UInt64),
    memory_max     SimpleAggregateFunction(max, UInt64),
    memory_p95     AggregateFunction(quantile(0.95), UInt64),
    samples        SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (vm_id, bucket)
TTL bucket + INTERVAL 365 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS system_metrics_1m_mv TO system_metrics_1m AS
SELECT
    vm_id,
    toStartOfMinute(ts) AS bucket,
    avgState(cpu_usage_percent) AS cpu_avg,
    max(cpu_usage_percent) AS cpu_max,
    quantileState(0.95)(cpu_usage_percent) AS cpu_p95,
    avgState(memory_used_kb) AS memory_avg,
    max(memory_used_kb) AS memory_max,
    quantileState(0.95)(memory_used_kb) AS memory_p95,
    toUInt64(count()) AS samples
FROM system_metrics
GROUP BY vm_id, bucket;

CREATE TABLE IF NOT EXISTS system_metrics_1h
(
    vm_id          LowCardinality(String),
    bucket         DateTime('UTC') CODEC(Delta, ZSTD(1)),
    cpu_avg        AggregateFunction(avg, Float32),
    cpu_max        SimpleAggregateFunction(max, Float32),
    cpu_p95        AggregateFunction(quantile(0.95), Float32),
    memory_avg     AggregateFunction(avg, UInt64),
    memory_max     SimpleAggregateFunction(max, UInt64),
    memory_p95     AggregateFunction(quantile(0.95), UInt64),
    samples        SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (vm_id, bucket)
TTL bucket + INTERVAL 365 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS system_metrics_1h_mv TO system_metrics_1h AS
SELECT
    vm_id,
    toStartOfHour(bucket) AS bucket,
    avgMergeState(cpu_avg) AS cpu_avg,
    max(cpu_max) AS cpu_max,
    quantileMergeState(0.95)(cpu_p95) AS cpu_p95,
    avgMergeState(memory_avg) AS memory_avg,
    max(memory_max) AS memory_max,
    quantileMergeState(0.95)(memory_p95) AS memory_p95,
    sum(samples) AS samples
FROM system_metrics_1m
GROUP BY vm_id, bucket;

-- The first offset of the insert block a row came in (streams/blocks.py): a
-- replay re-inserts a partition's last block with the same dedup token. Rows
-- from before this column read as complete (the all-ones default).
ALTER TABLE system_metrics
    ADD COLUMN IF NOT EXISTS kafka_block_start UInt64 DEFAULT 18446744073709551615 CODEC(Delta, ZSTD(1));

-- Replayed blocks must still be inside the dedup windows after a restart, also with many
-- workers inserting meanwhile (each block of each partition is one entry).
ALTER TABLE system_metrics MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE system_metrics_1m MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE system_metrics_1h MODIFY SETTING non_replicated_deduplication_window = 100000;
