-- 1-minute and 1-hour rollups of system_metrics, fed by materialized views and
-- cascaded: raw -> 1m (MV on system_metrics inserts) -> 1h (MV on 1m inserts).
-- A rollup row holds aggregate states; read them with the -Merge combinators
-- (avgMerge(cpu_avg), quantileMerge(0.95)(cpu_p95), max(cpu_max), sum(samples))
-- grouped by vm_id and bucket: parts merge in the background, not on insert.
-- The MVs see exactly the blocks inserted into system_metrics; a replayed block
-- comes with its dedup token, so each view gets it once (streams/storing.py).
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
    -- the raw figures are Nullable (an agent may not report one): aggregate the
    -- reported values only; every row still counts as a sample
    avgStateIf(assumeNotNull(cpu_usage_percent), cpu_usage_percent IS NOT NULL) AS cpu_avg,
    maxIf(assumeNotNull(cpu_usage_percent), cpu_usage_percent IS NOT NULL) AS cpu_max,
    quantileStateIf(0.95)(assumeNotNull(cpu_usage_percent), cpu_usage_percent IS NOT NULL)
        AS cpu_p95,
    avgStateIf(assumeNotNull(memory_used_kb), memory_used_kb IS NOT NULL) AS memory_avg,
    maxIf(assumeNotNull(memory_used_kb), memory_used_kb IS NOT NULL) AS memory_max,
    quantileStateIf(0.95)(assumeNotNull(memory_used_kb), memory_used_kb IS NOT NULL)
        AS memory_p95,
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

-- Replayed blocks must still be inside the dedup windows after a restart, also with many
-- workers inserting meanwhile (each block of each partition is one entry).
ALTER TABLE system_metrics MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE system_metrics_1m MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE system_metrics_1h MODIFY SETTING non_replicated_deduplication_window = 100000;
