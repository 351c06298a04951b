package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtsbote/amtsbote/pkg/store"
)

var _ store.Backlogs = (*DB)(nil)

// Backlogs lists the waiting work of every destination with a pickup list.
func (db *DB) Backlogs(ctx context.Context, cutoffs ...time.Time) ([]store.Backlog, error) {
	var q strings.Builder
	q.WriteString(`SELECT s.destination_id, COALESCE(d.home_region, ''), count(*),
		count(*) FILTER (WHERE s.picked_up_at IS NULL),
		min(s.submitted_at) FILTER (WHERE s.picked_up_at IS NULL)`)
	args := make([]any, 0, len(cutoffs))
	for i, c := range cutoffs {
		q.WriteString(`, count(*) FILTER (WHERE s.picked_up_at IS NULL AND s.submitted_at < $` + strconv.Itoa(i+1) + `)`)
		args = append(args, store.Truncate(c))
	}
	q.WriteString(` FROM submissions s LEFT JOIN destinations d ON d.id = s.destination_id
		WHERE s.status = 'submitted' AND s.routed_at IS NOT NULL
		GROUP BY s.destination_id, d.home_region ORDER BY s.destination_id`)
	var list []store.Backlog
	err := db.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q.String(), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			b := store.Backlog{Overdue: make([]int, len(cutoffs))}
			var oldest *time.Time
			dest := []any{&b.DestinationID, &b.HomeRegion, &b.Listed, &b.Unpicked, &oldest}
			for i := range b.Overdue {
				dest = append(dest, &b.Overdue[i])
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			if oldest != nil {
				t := store.Truncate(*oldest)
				b.OldestUnpicked = &t
			}
			list = append(list, b)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("backlogs: %w", err)
	}
	return list, nil
}
