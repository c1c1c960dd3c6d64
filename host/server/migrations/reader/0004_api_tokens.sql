-- API tokens issued by the admin API (`POST /v1/admin/tokens`, docs/security.md). Only the
-- secret's sha256 is kept: the secret itself is shown once, when it is issued.

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    -- JSON arrays of the scope's `plugin/query` and topic patterns.
    queries TEXT NOT NULL,
    topics TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- NULL: never expires.
    expires_ms BIGINT
);
