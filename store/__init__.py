"""The metric store, shared by the worker (writes), the gateway and the CLI (reads).

A floor of its own below the stages, so that none of them reaches into
another for it: ``clickhouse`` is the writer's store (ClickHouse through
clickhouse-connect, chDB or a server) with its migrations in ``sql/``;
``reader`` the read side (own connections, read-only, capped, cancellable);
``sql_policy`` what admin SQL may touch, judged on the engine's parse;
``reader_grants`` the read-only user for a server; ``exceptions`` the errors.
"""
