-- The installation the store belongs to: an id the bus keeps too (REGISTRY,
-- ab.registry.installation), so that a process whose store and bus belong
-- to different installations refuses to start. One row at most.

-- +goose Up
CREATE TABLE installation (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    id TEXT NOT NULL
);

-- +goose Down
DROP TABLE installation;
