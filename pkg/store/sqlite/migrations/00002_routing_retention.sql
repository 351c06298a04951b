-- Routing and retention: when a submission reached its destination's inbox
-- (only routed submissions wait for pickup) and when its content was
-- deleted, with indexes for the pickup list and the retention deadlines.

-- +goose Up
ALTER TABLE submissions ADD COLUMN routed_at TEXT;
ALTER TABLE submissions ADD COLUMN deleted_at TEXT;

DROP INDEX submissions_pickup;
CREATE INDEX submissions_pickup ON submissions (destination_id, created_at, id)
    WHERE status = 'submitted' AND routed_at IS NOT NULL AND picked_up_at IS NULL;

-- One index per deadline, each holding only what the deadline may still
-- apply to, ordered by the time its clock started.
CREATE INDEX submissions_due_incomplete ON submissions (created_at, id)
    WHERE status = 'incomplete';
CREATE INDEX submissions_due_picked_up ON submissions (picked_up_at, id)
    WHERE picked_up_at IS NOT NULL AND status <> 'deleted';
CREATE INDEX submissions_due_unpicked ON submissions (submitted_at, id)
    WHERE picked_up_at IS NULL AND submitted_at IS NOT NULL AND status NOT IN ('incomplete', 'deleted');

-- +goose Down
DROP INDEX submissions_due_unpicked;
DROP INDEX submissions_due_picked_up;
DROP INDEX submissions_due_incomplete;
DROP INDEX submissions_pickup;
CREATE INDEX submissions_pickup ON submissions (destination_id, created_at, id)
    WHERE status = 'submitted' AND picked_up_at IS NULL;
ALTER TABLE submissions DROP COLUMN deleted_at;
ALTER TABLE submissions DROP COLUMN routed_at;
