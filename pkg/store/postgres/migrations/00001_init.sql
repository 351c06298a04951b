-- Amtsbote's PostgreSQL schema. Each change is a new file NNNNN_name.sql
-- next to this one (00002_areas.sql, ...), in step with
-- ../../sqlite/migrations. Tables are created unqualified, in the first
-- schema of the search_path. Raw JSON that callers hand in (reply channels,
-- JWKs, audit records) is json, kept byte for byte; JSON the store encodes
-- itself is jsonb.

-- +goose Up
CREATE TABLE destinations (
    id                text PRIMARY KEY,
    status            text NOT NULL,
    contact           jsonb NOT NULL,
    services          jsonb NOT NULL,
    encryption_kid    text NOT NULL,
    signing_kid       text NOT NULL,
    metadata_versions jsonb NOT NULL,
    reply_channels    json,
    home_region       text NOT NULL,
    callback_url      text NOT NULL,
    callback_secret   text NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- kid is unique across destinations: FIT-Connect kids are UUIDs, and a
-- key's kid alone names it in SETs and JWE headers.
CREATE TABLE keys (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kid            text NOT NULL UNIQUE,
    destination_id text NOT NULL REFERENCES destinations (id),
    use            text NOT NULL,
    jwk            json NOT NULL,
    created_at     timestamptz NOT NULL,
    valid_until    timestamptz
);
CREATE INDEX keys_destination ON keys (destination_id, created_at, seq);

CREATE TABLE clients (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    secret_hash bytea,
    scopes      jsonb NOT NULL,
    disabled    boolean NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL,
    actor  text NOT NULL,
    action text NOT NULL,
    object text NOT NULL,
    before json,
    after  json
);
CREATE INDEX audit_log_object ON audit_log (object, id);

CREATE TABLE submissions (
    id                    text PRIMARY KEY,
    case_id               text NOT NULL,
    destination_id        text NOT NULL,
    sender_client_id      text NOT NULL,
    service_identifier    text NOT NULL,
    service_name          text NOT NULL,
    region                text NOT NULL,
    status                text NOT NULL,
    announced_attachments jsonb NOT NULL,
    uploaded_attachments  jsonb NOT NULL,
    callback_url          text NOT NULL,
    callback_secret       text NOT NULL,
    created_at            timestamptz NOT NULL,
    submitted_at          timestamptz,
    picked_up_at          timestamptz,
    updated_at            timestamptz NOT NULL
);
-- The pickup list: only what waits, per destination, oldest first.
CREATE INDEX submissions_pickup ON submissions (destination_id, created_at, id)
    WHERE status = 'submitted' AND picked_up_at IS NULL;
CREATE INDEX submissions_case ON submissions (case_id);

-- seq is the recording order; jti makes a replayed event a no-op.
CREATE TABLE events (
    jti           text PRIMARY KEY,
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    case_id       text NOT NULL,
    submission_id text NOT NULL,
    type          text NOT NULL,
    issuer        text NOT NULL,
    issued_at     timestamptz NOT NULL,
    token         text NOT NULL
);
CREATE INDEX events_case ON events (case_id, seq);

CREATE TABLE idempotency (
    key          text PRIMARY KEY,
    request_hash bytea,
    status       integer NOT NULL,
    body         bytea,
    created_at   timestamptz NOT NULL
);

-- +goose Down
DROP TABLE idempotency;
DROP TABLE events;
DROP TABLE submissions;
DROP TABLE audit_log;
DROP TABLE clients;
DROP TABLE keys;
DROP TABLE destinations;
