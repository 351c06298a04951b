// Package sqlite is the embedded store.Store: one SQLite file through
// modernc.org/sqlite (pure Go, no cgo), so Amtsbote runs with nothing
// installed.
//
// The file is in WAL mode with foreign keys on. All writes go through one
// connection, so writers queue in the process instead of meeting
// SQLITE_BUSY; reads use a separate pool of read-only connections and never
// wait for a writer. Times are kept as fixed-width UTC text at microsecond
// precision, like PostgreSQL's timestamptz: finer times are truncated and
// every time comes back in UTC.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/amtsbote/amtsbote/pkg/store"
)

// migrations holds the schema, one goose SQL file per version
// (00001_init.sql, 00002_…).
//
//go:embed migrations/*.sql
var migrations embed.FS

// readConns bounds the read pool; SQLite readers run in parallel under WAL.
const readConns = 4

// DB is a store.Store in one SQLite file. It is safe for concurrent use
// within one process; two processes on one file would contend for its write
// lock, which the busy timeout only partly hides.
type DB struct {
	w *sql.DB // exactly one connection: every write transaction queues for it
	r *sql.DB // read-only connections
	// ws and rs keep the statements of w and r prepared.
	ws, rs *stmts
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the SQLite database at path and migrates
// it to the latest schema. path names a file; ":memory:" is refused because
// the read and write pools must see one database.
//
// The log is synced at checkpoints, not at every commit (WAL with
// synchronous NORMAL): a commit survives a crash of the process, and after
// a power loss the database is consistent but may lack its last commits,
// as the embedded NATS server's file store, synced every two minutes, may.
// A sync per commit queued every write behind the disk. Durability across
// power loss is PostgreSQL's with NATS at sync_interval always.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite %q: need a plain file path", path)
	}
	pragmas := url.Values{"_pragma": {
		"busy_timeout(10000)",
		"foreign_keys(1)",
		"journal_mode(WAL)",
		"synchronous(NORMAL)",
	}}
	writeQ := url.Values{"_pragma": pragmas["_pragma"], "_txlock": {"immediate"}}
	w, err := sql.Open("sqlite", path+"?"+writeQ.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	readQ := url.Values{"_pragma": {"busy_timeout(10000)", "query_only(1)"}}
	r, err := sql.Open("sqlite", path+"?"+readQ.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &DB{w: w, r: r, ws: newStmts(w), rs: newStmts(r)}, nil
}

// migrate brings the schema up to date with goose's provider, which keeps
// no global state.
func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Close closes both connection pools.
func (db *DB) Close() error {
	db.ws.close()
	db.rs.close()
	return errors.Join(db.w.Close(), db.r.Close())
}

// write runs fn in a write transaction (BEGIN IMMEDIATE on the one write
// connection) and commits when fn returns nil. fn's error comes back as is.
func (db *DB) write(ctx context.Context, fn func(*txn) error) error {
	db.ws.prepare(ctx)
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&txn{Tx: tx, stmts: db.ws}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// read runs fn in a read transaction, so a list and its count see one
// snapshot.
func (db *DB) read(ctx context.Context, fn func(*txn) error) error {
	db.rs.prepare(ctx)
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to lose
	return fn(&txn{Tx: tx, stmts: db.rs})
}

// conflict translates SQLite's unique and primary key violations into
// store.ErrConflict, keeping the driver's message.
func conflict(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		}
	}
	return err
}

// notFound translates sql.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
