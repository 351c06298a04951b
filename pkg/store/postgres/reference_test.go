package postgres_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/amtsbote/amtsbote/pkg/store/postgres"
	"github.com/amtsbote/amtsbote/pkg/store/storetest"
)

// openRaw opens a store in a fresh schema and a second handle on it, for
// the statements of a migration.
func openRaw(t *testing.T) (*postgres.DB, *sql.DB) {
	t.Helper()
	url := freshSchema(t)
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return db, raw
}

func TestMigrationFoldsSearchNames(t *testing.T) {
	db, raw := openRaw(t)
	storetest.CheckSearchNameMigration(t, db, raw, func(i int) string { return "$" + strconv.Itoa(i) }, "migrations/00006_area_search.sql")
}

func TestMigrationMarksSeededAreas(t *testing.T) {
	db, raw := openRaw(t)
	storetest.CheckSeededMigration(t, db, raw, "migrations/00006_area_search.sql")
}
