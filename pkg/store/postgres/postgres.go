// Package postgres is the production store.Store on PostgreSQL through a
// pgx connection pool.
//
// Open migrates the schema with goose under an advisory lock, so several
// processes may start at once. Tables live in the first schema of the
// connection's search_path (a search_path parameter in the URL selects
// one). Times are timestamptz: microsecond precision, finer times are
// truncated, and every time comes back in UTC.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	neturl "net/url"
	"regexp"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/amtsbote/amtsbote/pkg/store"
)

// migrations holds the schema, one goose SQL file per version
// (00001_init.sql, 00002_…).
//
//go:embed migrations/*.sql
var migrations embed.FS

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// DB is a store.Store in a PostgreSQL database. It is safe for concurrent
// use, also by several processes on one database.
type DB struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*DB)(nil)

// Open connects to the database at url (a postgres:// URL or key=value
// string as pgx reads them, e.g. with search_path=amtsbote) and migrates
// it to the latest schema.
func Open(ctx context.Context, url string) (*DB, error) { return open(ctx, url, false) }

// open connects and migrates; with existing, a schema never migrated is
// refused first and left as it was.
func open(ctx context.Context, url string, existing bool) (*DB, error) {
	cfg, err := PoolConfig(url, DefaultMaxConns())
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if existing {
		err = holdsStore(ctx, pool)
	}
	if err == nil {
		err = migrate(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return &DB{pool: pool}, nil
}

// OpenExisting is Open for a database that already holds an Amtsbote
// store: one whose schema was never migrated is refused and left as it
// was, so that a wrong URL given to an operator command does not make a
// new, empty store there.
func OpenExisting(ctx context.Context, url string) (*DB, error) { return open(ctx, url, true) }

// holdsStore reports, as an error, a current schema that was never
// migrated.
func holdsStore(ctx context.Context, pool *pgxpool.Pool) error {
	var (
		schema   *string
		migrated bool
	)
	if err := pool.QueryRow(ctx, `SELECT current_schema(), to_regclass('goose_db_version') IS NOT NULL`).Scan(&schema, &migrated); err != nil {
		return err
	}
	if schema == nil || !migrated {
		name := "(none)"
		if schema != nil {
			name = *schema
		}
		return fmt.Errorf("schema %s holds no Amtsbote store: give the running installation's database", name)
	}
	return nil
}

// PoolConfig reads conn (a postgres:// URL or key=value string) as pgx
// does and gives the pool size connections, or pool_min_conns if that is
// more, unless conn sets pool_max_conns. Size zero keeps pgx's default.
func PoolConfig(conn string, size int32) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		return nil, err
	}
	if size > 0 && !setsMaxConns(conn) {
		cfg.MaxConns = max(size, cfg.MinConns)
	}
	return cfg, nil
}

// setsMaxConns reports whether a URL or key=value string pgx has read sets
// pool_max_conns.
func setsMaxConns(conn string) bool {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := neturl.Parse(conn)
		return err == nil && u.Query().Has("pool_max_conns")
	}
	return maxConnsKey.MatchString(conn)
}

var maxConnsKey = regexp.MustCompile(`(?:^|\s)pool_max_conns\s*=`)

// DefaultMaxConns is the store's pool size when the URL does not set
// pool_max_conns: four connections per CPU, at least eight. pgx's own
// default, one connection per CPU and at least four, keeps requests
// queueing for a connection while others wait for their commit to reach
// the disk: at 470 submissions per second on two cores the submit's p50
// was 111 ms with four connections and 13.5 ms with eight.
func DefaultMaxConns() int32 {
	return int32(max(8, 4*runtime.NumCPU()))
}

// migrate brings the schema up to date with goose's provider, which keeps
// no global state. The advisory lock is per schema, so processes sharing a
// schema take turns and separate schemas do not wait for each other.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if schema == nil {
		return errors.New("migrate: no schema of the search_path exists")
	}
	h := fnv.New64a()
	h.Write([]byte(*schema))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(lock.DefaultLockID^int64(h.Sum64()>>1)),
		lock.WithLockTimeout(1, 300),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate schema %s: %w", *schema, err)
	}
	return nil
}

// Close closes the connection pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// querier is a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// write runs fn in a read-committed transaction and commits when fn
// returns nil. fn's error comes back as is.
func (db *DB) write(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", conflict(err))
	}
	return nil
}

// read runs fn in a read-only repeatable-read transaction, so a list and
// its count see one snapshot.
func (db *DB) read(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only: nothing to lose
	return fn(tx)
}

// conflict translates unique violations into store.ErrConflict, keeping
// the server's message.
func conflict(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == uniqueViolation {
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	}
	return err
}

// notFound translates pgx.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
