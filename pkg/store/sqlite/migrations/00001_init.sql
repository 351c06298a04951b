-- Amtsbote's SQLite schema. Each change is a new file NNNNN_name.sql next to
-- this one (00002_areas.sql, ...), in step with ../../postgres/migrations.
-- Times are UTC text "2006-01-02T15:04:05.000000Z": fixed width, so they
-- sort as they compare. JSON is kept as given.

-- +goose Up
CREATE TABLE destinations (
    id                TEXT PRIMARY KEY,
    status            TEXT NOT NULL,
    contact           TEXT NOT NULL CHECK (json_valid(contact)),
    services          TEXT NOT NULL CHECK (json_valid(services)),
    encryption_kid    TEXT NOT NULL,
    signing_kid       TEXT NOT NULL,
    metadata_versions TEXT NOT NULL CHECK (json_valid(metadata_versions)),
    reply_channels    TEXT CHECK (json_valid(reply_channels)),
    home_region       TEXT NOT NULL,
    callback_url      TEXT NOT NULL,
    callback_secret   TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
) STRICT;

-- kid is unique across destinations: FIT-Connect kids are UUIDs, and a
-- key's kid alone names it in SETs and JWE headers.
CREATE TABLE keys (
    seq            INTEGER PRIMARY KEY,
    kid            TEXT NOT NULL UNIQUE,
    destination_id TEXT NOT NULL REFERENCES destinations (id),
    use            TEXT NOT NULL,
    jwk            TEXT NOT NULL CHECK (json_valid(jwk)),
    created_at     TEXT NOT NULL,
    valid_until    TEXT
) STRICT;
CREATE INDEX keys_destination ON keys (destination_id, created_at, seq);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash BLOB,
    scopes      TEXT NOT NULL CHECK (json_valid(scopes)),
    disabled    INTEGER NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    before TEXT CHECK (json_valid(before)),
    after  TEXT CHECK (json_valid(after))
) STRICT;
CREATE INDEX audit_log_object ON audit_log (object, id);

CREATE TABLE submissions (
    id                    TEXT PRIMARY KEY,
    case_id               TEXT NOT NULL,
    destination_id        TEXT NOT NULL,
    sender_client_id      TEXT NOT NULL,
    service_identifier    TEXT NOT NULL,
    service_name          TEXT NOT NULL,
    region                TEXT NOT NULL,
    status                TEXT NOT NULL,
    announced_attachments TEXT NOT NULL CHECK (json_valid(announced_attachments)),
    uploaded_attachments  TEXT NOT NULL CHECK (json_valid(uploaded_attachments)),
    callback_url          TEXT NOT NULL,
    callback_secret       TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    submitted_at          TEXT,
    picked_up_at          TEXT,
    updated_at            TEXT NOT NULL
) STRICT;
-- The pickup list: only what waits, per destination, oldest first.
CREATE INDEX submissions_pickup ON submissions (destination_id, created_at, id)
    WHERE status = 'submitted' AND picked_up_at IS NULL;
CREATE INDEX submissions_case ON submissions (case_id);

-- seq is the recording order; jti makes a replayed event a no-op.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    jti           TEXT NOT NULL UNIQUE,
    case_id       TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    type          TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    issued_at     TEXT NOT NULL,
    token         TEXT NOT NULL
) STRICT;
CREATE INDEX events_case ON events (case_id, seq);

CREATE TABLE idempotency (
    key          TEXT PRIMARY KEY,
    request_hash BLOB,
    status       INTEGER NOT NULL,
    body         BLOB,
    created_at   TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE idempotency;
DROP TABLE events;
DROP TABLE submissions;
DROP TABLE audit_log;
DROP TABLE clients;
DROP TABLE keys;
DROP TABLE destinations;
