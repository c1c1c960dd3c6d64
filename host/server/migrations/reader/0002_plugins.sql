-- Reader plugins: each plugin's cursor per (stream, instance), its key-value store, and the
-- batches it skipped. A plugin's cursor, its key-value writes and its dead letters of one
-- group of batches are written in one transaction.

CREATE TABLE plugin_cursors (
    plugin   TEXT   NOT NULL,
    stream   TEXT   NOT NULL,
    instance TEXT   NOT NULL,
    token    BIGINT NOT NULL,
    PRIMARY KEY (plugin, stream, instance)
);

CREATE TABLE plugin_kv (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (plugin, key)
);

-- A batch the plugin answered `skip` for: never handed to it again.
CREATE TABLE plugin_dead_letters (
    plugin     TEXT   NOT NULL,
    stream     TEXT   NOT NULL,
    instance   TEXT   NOT NULL,
    from_token BIGINT NOT NULL,
    to_token   BIGINT NOT NULL,
    reason     TEXT   NOT NULL,
    at_ms      BIGINT NOT NULL
);
