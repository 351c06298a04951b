-- The ledger is the only writer of the event log and of a submission's
-- progress: it records each event with its position in the EVENTS stream
-- and folds a submission's events in that order.

-- +goose Up
ALTER TABLE events ADD COLUMN stream_seq BIGINT;
CREATE INDEX events_submission ON events (submission_id);

-- +goose Down
DROP INDEX events_submission;
ALTER TABLE events DROP COLUMN stream_seq;
