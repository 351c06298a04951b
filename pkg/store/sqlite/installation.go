package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Installation returns the recorded installation id and whether the store
// holds a submission or an event.
func (db *DB) Installation(ctx context.Context) (string, bool, error) {
	var (
		id   sql.NullString
		used bool
	)
	err := db.rs.QueryRowContext(ctx, `SELECT (SELECT id FROM installation),
		EXISTS (SELECT 1 FROM submissions) OR EXISTS (SELECT 1 FROM events)`).Scan(&id, &used)
	if err != nil {
		return "", false, fmt.Errorf("installation: %w", err)
	}
	return id.String, used, nil
}

// RecordInstallation records id unless an id is recorded and returns the
// recorded one.
func (db *DB) RecordInstallation(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", errors.New("record installation: empty id")
	}
	var out string
	err := db.write(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO installation (id) VALUES (?) ON CONFLICT DO NOTHING`, id); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT id FROM installation`).Scan(&out)
	})
	if err != nil {
		return "", fmt.Errorf("record installation %s: %w", id, err)
	}
	return out, nil
}
