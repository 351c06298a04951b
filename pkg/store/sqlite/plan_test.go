package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestQueriesUseTheirIndexes checks that SQLite answers the pickup list
// and each deadline's query from its partial index: the query must imply
// the index's condition, which a change of either breaks quietly.
func TestQueriesUseTheirIndexes(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "amtsbote.db"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tests := []struct {
		name, query, index string
		args               []any
	}{
		{"pickup list", `SELECT id FROM submissions ` + pickupWhere + ` ORDER BY created_at, id LIMIT ? OFFSET ?`,
			"submissions_pickup", []any{`["d1","d2"]`, 10, 0}},
		{"pickup count", `SELECT count(*) FROM submissions ` + pickupWhere, "submissions_pickup", []any{`["d1"]`}},
		{"incomplete", `SELECT id FROM submissions ` + dueQueries[store.DeadlineIncomplete] + ` LIMIT ?`,
			"submissions_due_incomplete", []any{"2025-01-01", 10}},
		{"picked up", `SELECT id FROM submissions ` + dueQueries[store.DeadlinePickedUp] + ` LIMIT ?`,
			"submissions_due_picked_up", []any{"2025-01-01", 10}},
		{"unpicked reject", `SELECT id FROM submissions ` + dueQueries[store.DeadlineUnpickedReject] + ` LIMIT ?`,
			"submissions_due_unpicked", []any{"2025-01-01", 10}},
		{"unpicked delete", `SELECT id FROM submissions ` + dueQueries[store.DeadlineUnpickedDelete] + ` LIMIT ?`,
			"submissions_due_unpicked", []any{"2025-01-01", 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := db.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+tt.query, tt.args...)
			if err != nil {
				t.Fatalf("explain: %v", err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatalf("scan plan: %v", err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("plan: %v", err)
			}
			if !strings.Contains(strings.Join(plan, "\n"), "INDEX "+tt.index) {
				t.Errorf("plan does not use %s:\n%s", tt.index, strings.Join(plan, "\n"))
			}
		})
	}
}
