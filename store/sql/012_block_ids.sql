-- A block of agent.raw spans every partition of a worker's batch (streams/blocks.py):
-- each partition's row of the intent also names the whole block, so whoever owns
-- the partition after a crash can rebuild the block and insert it with its tokens.
-- Rows written before (one partition per block) have '' and are their own block.
ALTER TABLE ingest_blocks ADD COLUMN IF NOT EXISTS block String DEFAULT '' AFTER block_end;
