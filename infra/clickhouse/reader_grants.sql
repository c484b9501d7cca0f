-- The read-only ClickHouse user of the gateway and `vmpulse query` on a server
-- (docs/SECURITY.md, "Admin (SQL)"). `vmpulse reader-grants` renders this file from
-- VMPULSE_CLICKHOUSE_READ_URL (user, password, database) and the read limits; an
-- administrator applies it, e.g. `vmpulse reader-grants | clickhouse-client --multiquery`.
-- Set `select_from_system_db_requires_grant` and
-- `select_from_information_schema_requires_grant` to true in the server's config, so
-- that the system tables granted below are the only ones this user can read.

-- readonly = 1: no statement of this user changes a setting, so the limits hold;
-- the limits are also constraints (READONLY) that no profile of the session lifts.
CREATE SETTINGS PROFILE OR REPLACE {profile} SETTINGS
    readonly = 1,
    max_execution_time = {max_execution_time} READONLY,
    max_memory_usage = {max_memory_usage} READONLY,
    max_result_rows = {max_result_rows} READONLY,
    max_result_bytes = {max_result_bytes} READONLY,
    result_overflow_mode = 'break' READONLY,
    max_threads = {max_threads} READONLY,
    os_thread_priority = {os_thread_priority} READONLY,
    cancel_http_readonly_queries_on_client_close = 1 READONLY;

-- Only the password's SHA-256 is stored here, never the password.
CREATE USER OR REPLACE {user} IDENTIFIED WITH sha256_hash BY '{password_sha256}'
    DEFAULT DATABASE {database} SETTINGS PROFILE '{profile}';

-- SELECT on the metric database and on the system tables that describe the engine
-- (store/sql_policy.py, SYSTEM_TABLES); nothing else: no table functions (they need
-- CREATE TEMPORARY TABLE and a source grant), no dictionaries, no other database.
REVOKE ALL ON *.* FROM {user};
GRANT SELECT ON {database}.* TO {user};
{system_grants}

-- The reader's own bookkeeping, which admin SQL cannot reach (the policy refuses these
-- tables): the client's handshake reads the session's settings, and the policy lists
-- the metric database's tables.
GRANT SELECT(name, value, readonly) ON system.settings TO {user};
GRANT SELECT(database, name) ON system.tables TO {user};
