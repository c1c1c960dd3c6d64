-- Gaps: token ranges (from_token, to_token] of a (stream, instance) the reader moved past
-- without their rows, with why: `trimmed` (the writer's retention deleted them before this
-- reader fetched them: the catch-up endpoint answered 410) or `unavailable` (no source has
-- them: a Synapse stream whose rows are only in Synapse's database). Written in the
-- transaction that moves the position past the range, so a gap is recorded exactly when it
-- is taken.
CREATE TABLE reader_gaps (
    stream     TEXT   NOT NULL,
    instance   TEXT   NOT NULL,
    from_token BIGINT NOT NULL,
    to_token   BIGINT NOT NULL,
    reason     TEXT   NOT NULL,
    at_ms      BIGINT NOT NULL
);
