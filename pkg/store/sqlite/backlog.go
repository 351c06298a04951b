package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/store"
)

var _ store.Backlogs = (*DB)(nil)

// Backlogs lists the waiting work of every destination with a pickup list.
func (db *DB) Backlogs(ctx context.Context, cutoffs ...time.Time) ([]store.Backlog, error) {
	var q strings.Builder
	q.WriteString(`SELECT s.destination_id, COALESCE(d.home_region, ''), count(*),
		COALESCE(sum(CASE WHEN s.picked_up_at IS NULL THEN 1 ELSE 0 END), 0),
		min(CASE WHEN s.picked_up_at IS NULL THEN s.submitted_at END)`)
	args := make([]any, 0, len(cutoffs))
	for _, c := range cutoffs {
		q.WriteString(`, COALESCE(sum(CASE WHEN s.picked_up_at IS NULL AND s.submitted_at < ? THEN 1 ELSE 0 END), 0)`)
		args = append(args, encTime(c))
	}
	q.WriteString(` FROM submissions s LEFT JOIN destinations d ON d.id = s.destination_id
		WHERE s.status = 'submitted' AND s.routed_at IS NOT NULL
		GROUP BY s.destination_id, d.home_region ORDER BY s.destination_id`)
	rows, err := db.rs.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("backlogs: %w", err)
	}
	defer rows.Close()
	var list []store.Backlog
	for rows.Next() {
		b := store.Backlog{Overdue: make([]int, len(cutoffs))}
		var oldest sql.NullString
		dest := []any{&b.DestinationID, &b.HomeRegion, &b.Listed, &b.Unpicked, &oldest}
		for i := range b.Overdue {
			dest = append(dest, &b.Overdue[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("backlogs: %w", err)
		}
		if oldest.Valid {
			t, err := decTime(oldest.String)
			if err != nil {
				return nil, fmt.Errorf("backlogs of %s: %w", b.DestinationID, err)
			}
			b.OldestUnpicked = &t
		}
		list = append(list, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("backlogs: %w", err)
	}
	return list, nil
}
