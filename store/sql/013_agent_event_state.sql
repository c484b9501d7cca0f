-- The state an agent reports about itself (issue 10): connection_status
-- (connected, disconnected, degraded, ...) and circuit_breaker_state (Closed,
-- Open, HalfOpen) rows of agent_events carry it; other kinds leave it NULL.
-- Forward only: rows stored before read NULL. Inserts name their columns, so a
-- block replayed after the upgrade keeps its dedup token (streams/storing.py).
ALTER TABLE agent_events
    ADD COLUMN IF NOT EXISTS state LowCardinality(Nullable(String)) AFTER severity;
