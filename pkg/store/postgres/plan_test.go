package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

// TestQueriesUseTheirIndexes checks that PostgreSQL can answer the pickup
// list and each deadline's query from its partial index: the query must
// imply the index's condition, which a change of either breaks quietly.
// Sequential scans are switched off, as an empty table would favour them.
func TestQueriesUseTheirIndexes(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	db.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatalf("disable sequential scans: %v", err)
	}
	cutoff := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, query, index string
		args               []any
	}{
		{"pickup list", `SELECT id FROM submissions ` + postgres.PickupWhere + ` ORDER BY created_at, id LIMIT $2 OFFSET $3`,
			"submissions_pickup", []any{[]string{"d1", "d2"}, 10, 0}},
		{"pickup count", `SELECT count(*) FROM submissions ` + postgres.PickupWhere, "submissions_pickup", []any{[]string{"d1"}}},
		{"incomplete", `SELECT id FROM submissions ` + postgres.DueQueries[store.DeadlineIncomplete],
			"submissions_due_incomplete", []any{cutoff, 10}},
		{"picked up", `SELECT id FROM submissions ` + postgres.DueQueries[store.DeadlinePickedUp],
			"submissions_due_picked_up", []any{cutoff, 10}},
		{"unpicked reject", `SELECT id FROM submissions ` + postgres.DueQueries[store.DeadlineUnpickedReject],
			"submissions_due_unpicked", []any{cutoff, 10}},
		{"unpicked delete", `SELECT id FROM submissions ` + postgres.DueQueries[store.DeadlineUnpickedDelete],
			"submissions_due_unpicked", []any{cutoff, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := conn.Query(ctx, "EXPLAIN "+tt.query, tt.args...)
			if err != nil {
				t.Fatalf("explain: %v", err)
			}
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if !strings.Contains(strings.Join(plan, "\n"), tt.index) {
				t.Errorf("plan does not use %s:\n%s", tt.index, strings.Join(plan, "\n"))
			}
		})
	}
}
