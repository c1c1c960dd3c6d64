-- The writer's log. Plain SQL types that SQLite and PostgreSQL both take (BIGINT, TEXT).

-- One row per declared stream: its current position (the highest token committed).
-- Position 1 is the implicit origin, as in Synapse: the first row of a stream gets token 2.
CREATE TABLE streams (
    name     TEXT   NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL
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
