-- Runs: a Synapse writer of an in-memory stream (`typing`, `federation`,
-- `presence_federation`) starts its tokens again from 0 when its process restarts. `run` counts
-- those restarts per (stream, instance) as the reader saw them, so a position or a plugin
-- cursor says which run of the writer its token belongs to. 0 for every other stream.

ALTER TABLE reader_positions ADD COLUMN run BIGINT NOT NULL DEFAULT 0;

ALTER TABLE plugin_cursors ADD COLUMN run BIGINT NOT NULL DEFAULT 0;
