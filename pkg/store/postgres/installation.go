package postgres

import (
	"context"
	"errors"
	"fmt"
)

// Installation returns the recorded installation id and whether the store
// holds a submission or an event.
func (db *DB) Installation(ctx context.Context) (string, bool, error) {
	var (
		id   *string
		used bool
	)
	err := db.pool.QueryRow(ctx, `SELECT (SELECT id FROM installation),
		EXISTS (SELECT 1 FROM submissions) OR EXISTS (SELECT 1 FROM events)`).Scan(&id, &used)
	if err != nil {
		return "", false, fmt.Errorf("installation: %w", err)
	}
	if id == nil {
		return "", used, nil
	}
	return *id, used, nil
}

// RecordInstallation records id unless an id is recorded and returns the
// recorded one. Of two processes recording at once, the second waits for
// the first's row and reads it.
func (db *DB) RecordInstallation(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", errors.New("record installation: empty id")
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO installation (id) VALUES ($1) ON CONFLICT DO NOTHING`, id); err != nil {
		return "", fmt.Errorf("record installation %s: %w", id, err)
	}
	var out string
	if err := db.pool.QueryRow(ctx, `SELECT id FROM installation`).Scan(&out); err != nil {
		return "", fmt.Errorf("record installation %s: %w", id, err)
	}
	return out, nil
}
