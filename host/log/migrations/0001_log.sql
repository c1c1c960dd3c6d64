-- The writer's log. Plain SQL types that SQLite and PostgreSQL both take (BIGINT, TEXT).

-- One row per declared stream. A stream's position is its highest token (read through the
-- primary key of stream_rows), or 1 with no rows: the implicit origin, as in Synapse, so the
-- first row of a stream gets token 2. Keeping no position column means an append is a
-- single INSERT.
CREATE TABLE streams (
    name TEXT NOT NULL PRIMARY KEY
);

-- Every appended row. Rows that share a token (one request with a shared token) are ordered
-- by seq; (stream, token, seq) is the order readers see.
CREATE TABLE stream_rows (
    stream   TEXT   NOT NULL,
    token    BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    instance TEXT   NOT NULL,
    row_json TEXT   NOT NULL,
    PRIMARY KEY (stream, token, seq)
);
