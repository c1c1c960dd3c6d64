-- Retention (docs/configuration.md, "[writer.retention]"): the writer trims a stream's oldest
-- rows. trimmed_upto is the highest token trimmed (1, the origin, when nothing was): every
-- row at or below it is gone, so a read from below it is refused rather than answered short.
-- It is raised in the same transaction as the rows are deleted. The newest token of a stream
-- is never trimmed, so a stream's position (its highest token) survives any trim.
ALTER TABLE streams ADD COLUMN trimmed_upto BIGINT NOT NULL DEFAULT 1;

-- A sparse clock for trimming by age: the writer notes (stream, position, time) at each
-- retention pass; every row at or below `token` was committed at or before `at_ms`.
CREATE TABLE stream_marks (
    stream TEXT   NOT NULL,
    token  BIGINT NOT NULL,
    at_ms  BIGINT NOT NULL,
    PRIMARY KEY (stream, token)
);
