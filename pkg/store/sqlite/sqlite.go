// Package sqlite is the embedded store.Store: one SQLite file through
// modernc.org/sqlite (pure Go, no cgo), so Amtsbote runs with nothing
// installed.
//
// The file is in WAL mode with foreign keys on. All writes go through one
// connection, so writers queue in the process instead of meeting
// SQLITE_BUSY; the writes queued at one time (and, while writes come
// together, within writeLinger of the first) share one transaction, each in
// a savepoint of its own, so that a commit's cost is shared. Reads use a
// separate pool of read-only connections and never wait for a writer. A
// connection of its own checkpoints the log every second, so that no write
// waits for a checkpoint's copying and syncs. Times are kept as
// fixed-width UTC text at microsecond precision, like PostgreSQL's
// timestamptz: finer times are truncated and every time comes back in UTC.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

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
	w *sql.DB // exactly one connection, used by the writer alone
	r *sql.DB // read-only connections
	c *sql.DB // one connection, used by the checkpointer alone
	// ws and rs keep the statements of w and r prepared.
	ws, rs *stmts

	writes chan writeReq
	closed chan struct{}
	// background runs the writer and the checkpointer until closed.
	background sync.WaitGroup
	closeOnce  sync.Once
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
	// The writer leaves checkpoints to the checkpointer.
	writeQ := url.Values{"_pragma": append(slices.Clone(pragmas["_pragma"]), "wal_autocheckpoint(0)"), "_txlock": {"immediate"}}
	w, err := sql.Open("sqlite", path+"?"+writeQ.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	oneConnection(w)
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
	c, err := sql.Open("sqlite", path+"?"+url.Values{"_pragma": {"busy_timeout(10000)"}}.Encode())
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	oneConnection(c)
	db := &DB{w: w, r: r, c: c, ws: newStmts(w), rs: newStmts(r),
		writes: make(chan writeReq), closed: make(chan struct{})}
	db.background.Go(db.writer)
	db.background.Go(db.checkpointer)
	return db, nil
}

// oneConnection keeps db at one connection, open for as long as db is.
func oneConnection(db *sql.DB) {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
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

// Close stops the writer, after the write it is doing, and the
// checkpointer, and closes the connection pools.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { close(db.closed) })
	db.background.Wait()
	db.ws.close()
	db.rs.close()
	return errors.Join(db.w.Close(), db.r.Close(), db.c.Close())
}

// checkpointEvery is how often the checkpointer moves the log's committed
// pages into the database file.
const checkpointEvery = time.Second

// checkpointer checkpoints the log every checkpointEvery until Close. A passive
// checkpoint copies what no reader still needs without waiting for the
// readers or the writer, who go on meanwhile. One that fails leaves the
// pages in the log, where they are safe, to the next; the last connection
// to close checkpoints the rest.
func (db *DB) checkpointer() {
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	for {
		select {
		case <-db.closed:
			return
		case <-tick.C:
			_, _ = db.c.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// errClosed answers a write after Close.
var errClosed = errors.New("sqlite store closed")

// maxWriteBatch bounds the writes that share one transaction.
const maxWriteBatch = 64

// writeReq is a write waiting for the writer.
type writeReq struct {
	fn   func(*txn) error
	done chan error
}

// panicked carries a panic in a write's fn back to its caller.
type panicked struct{ v any }

func (p panicked) Error() string { return fmt.Sprint("panic in write: ", p.v) }

// write runs fn in a write transaction (BEGIN IMMEDIATE on the one write
// connection) and returns when it is committed, or with fn's error as is,
// fn's changes undone. Other writes may share the transaction; each runs
// in a savepoint of its own, so what one does or fails to do never touches
// another's. ctx ends the wait for the writer, not a statement under way:
// an interrupted statement would roll back the others' writes with it.
func (db *DB) write(ctx context.Context, fn func(*txn) error) error {
	req := writeReq{fn: fn, done: make(chan error, 1)}
	select {
	case db.writes <- req:
	case <-db.closed:
		return errClosed
	case <-ctx.Done():
		return fmt.Errorf("write: %w", ctx.Err())
	}
	err := <-req.done
	if p, ok := err.(panicked); ok {
		panic(p.v)
	}
	return err
}

// writeLinger is how long the writer waits for more writes to share a
// transaction while writes come together (the last transaction had more
// than one): under load nearly every write had arrived alone (1.35 per
// transaction in the ingest load test), each paying for its own BEGIN and
// WAL commit. Writes in series, one caller after another, never wait.
const writeLinger = 500 * time.Microsecond

// writer runs the writes, those queued at one time (or within
// writeLinger, while they come together) in one transaction, until Close.
func (db *DB) writer() {
	batch := make([]writeReq, 0, maxWriteBatch)
	linger := time.NewTimer(writeLinger)
	linger.Stop()
	for {
		together := len(batch) > 1
		select {
		case <-db.closed:
			return
		case req := <-db.writes:
			batch = append(batch[:0], req)
		}
		if together {
			linger.Reset(writeLinger)
		wait:
			for len(batch) < maxWriteBatch {
				select {
				case req := <-db.writes:
					batch = append(batch, req)
				case <-linger.C:
					break wait
				case <-db.closed:
					break wait
				}
			}
			linger.Stop()
		}
	more:
		for len(batch) < maxWriteBatch {
			select {
			case req := <-db.writes:
				batch = append(batch, req)
			default:
				break more
			}
		}
		db.commit(batch)
	}
}

// commit runs batch in one transaction and answers each write.
func (db *DB) commit(batch []writeReq) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	answer := func() {
		for i, req := range batch {
			req.done <- errs[i]
		}
	}
	failAll := func(err error) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		answer()
	}
	db.ws.prepare(ctx)
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		failAll(fmt.Errorf("begin: %w", err))
		return
	}
	if err := runEach(ctx, tx, db.ws, batch, errs); err != nil {
		_ = tx.Rollback()
		failAll(err)
		return
	}
	if !slices.Contains(errs, nil) {
		// Every write failed: nothing to commit.
		_ = tx.Rollback()
		answer()
		return
	}
	if err := tx.Commit(); err != nil {
		failAll(fmt.Errorf("commit: %w", err))
		return
	}
	answer()
}

// runEach runs each write of batch in tx, into errs; with more than one,
// each in a savepoint that its failure rolls back to. An error is a
// statement of the savepoints failing, which leaves tx to be rolled back.
func runEach(ctx context.Context, tx *sql.Tx, ws *stmts, batch []writeReq, errs []error) error {
	t := &txn{Tx: tx, stmts: ws, shared: true}
	savepoint := func(stmt string) error {
		if len(batch) == 1 {
			return nil
		}
		// Prepared like the writes, not parsed again for every write.
		if _, err := t.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
		return nil
	}
	for i, req := range batch {
		if err := savepoint("SAVEPOINT w"); err != nil {
			return err
		}
		if errs[i] = run(req.fn, t); errs[i] != nil {
			if err := savepoint("ROLLBACK TO w"); err != nil {
				return err
			}
		}
		if err := savepoint("RELEASE w"); err != nil {
			return err
		}
	}
	return nil
}

// run calls fn, turning a panic into panicked for write to raise again.
func run(fn func(*txn) error, t *txn) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicked{v}
		}
	}()
	return fn(t)
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
