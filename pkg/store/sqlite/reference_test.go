package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
	"github.com/amtsbote/amtsbote/pkg/store/storetest"
)

// openRaw opens a store and a second handle on its file, for the
// statements of a migration.
func openRaw(t *testing.T) (*sqlite.DB, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "amtsbote.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { raw.Close() })
	return db, raw
}

func TestMigrationFoldsSearchNames(t *testing.T) {
	db, raw := openRaw(t)
	storetest.CheckSearchNameMigration(t, db, raw, func(int) string { return "?" }, "migrations/00006_area_search.sql")
}

func TestMigrationMarksSeededAreas(t *testing.T) {
	db, raw := openRaw(t)
	storetest.CheckSeededMigration(t, db, raw, "migrations/00006_area_search.sql")
}
