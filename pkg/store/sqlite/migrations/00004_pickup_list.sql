-- The pickup list holds what is ready for pickup: routed and submitted,
-- whether fetched or not. A fetch no longer takes a submission off (only
-- accept, reject, forward or deletion change its status), so a receiver
-- whose fetch failed fetches again.

-- +goose Up
DROP INDEX submissions_pickup;
CREATE INDEX submissions_pickup ON submissions (destination_id, created_at, id)
    WHERE status = 'submitted' AND routed_at IS NOT NULL;

-- +goose Down
DROP INDEX submissions_pickup;
CREATE INDEX submissions_pickup ON submissions (destination_id, created_at, id)
    WHERE status = 'submitted' AND routed_at IS NOT NULL AND picked_up_at IS NULL;
