-- The reader's own database: how far it has applied each writer's stream, and (with
-- `record_rows`) every row it delivered. Plain SQL types that SQLite and PostgreSQL both take.

-- The applied position of each (stream, instance). Written in the same transaction as the
-- sink's effects, so the two never disagree.
CREATE TABLE reader_positions (
    stream   TEXT   NOT NULL,
    instance TEXT   NOT NULL,
    token    BIGINT NOT NULL,
    PRIMARY KEY (stream, instance)
);

-- Rows delivered to the recording sink. seq orders the rows of one batch (one token). The
-- primary key makes a duplicate delivery fail the transaction instead of passing unnoticed.
CREATE TABLE recorded_rows (
    stream   TEXT   NOT NULL,
    instance TEXT   NOT NULL,
    token    BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    row_json TEXT   NOT NULL,
    PRIMARY KEY (stream, instance, token, seq)
);
