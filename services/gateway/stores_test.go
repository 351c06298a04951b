package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

// backends are the stores the store-dependent tests run on: SQLite always,
// PostgreSQL when AMTSBOTE_TEST_DATABASE_URL names a database.
func backends(t *testing.T) []backend {
	t.Helper()
	return []backend{{"sqlite", openSQLite}, {"postgres", openPostgres}}
}

// openPostgres opens a store on a fresh schema of the test database and
// drops the schema afterwards. Without a database the test skips, or fails
// under CI, where the database belongs to the run.
func openPostgres(t *testing.T) store.Store {
	t.Helper()
	base := os.Getenv("AMTSBOTE_TEST_DATABASE_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("AMTSBOTE_TEST_DATABASE_URL is unset, and CI needs the PostgreSQL tests")
		}
		t.Skip("AMTSBOTE_TEST_DATABASE_URL is unset; set it (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the gateway on PostgreSQL")
	}
	ctx := context.Background()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "gw_" + hex.EncodeToString(b)
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema on AMTSBOTE_TEST_DATABASE_URL: %v", err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	db, err := postgres.Open(ctx, withSearchPath(t, base, schema))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// withSearchPath sets search_path in a URL or key=value connection string.
func withSearchPath(t *testing.T, conn, schema string) string {
	if !strings.HasPrefix(conn, "postgres://") && !strings.HasPrefix(conn, "postgresql://") {
		return conn + " search_path=" + schema
	}
	u, err := url.Parse(conn)
	if err != nil {
		t.Fatalf("parse AMTSBOTE_TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
