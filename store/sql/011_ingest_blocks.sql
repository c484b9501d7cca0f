-- The intent log of the storage stage (streams/storing.py): before any row of a
-- block of agent.raw is written, the block (topic, partition, first and last
-- offset) is recorded here; a replay after a crash re-inserts exactly that
-- block with the same dedup tokens, so every table and view holds it once.
CREATE TABLE IF NOT EXISTS ingest_blocks
(
    topic       LowCardinality(String),
    partition   UInt32,
    block_start UInt64,
    block_end   UInt64,
    stored_at   DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
ORDER BY (topic, partition, block_end)
TTL toDateTime(stored_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 100000;

-- A replayed block must still be inside every table's dedup window after a restart,
-- also with many workers inserting meanwhile (each block of each partition is one entry).
ALTER TABLE ingest_blocks MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE disk_usage MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE network_interfaces MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE process_snapshots MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE port_usage MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE application_usage MODIFY SETTING non_replicated_deduplication_window = 100000;
ALTER TABLE agent_events MODIFY SETTING non_replicated_deduplication_window = 100000;
