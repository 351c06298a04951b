package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// maxStmts bounds the statements a pool keeps prepared; SQL beyond it is
// prepared for each use, as all SQL was before.
const maxStmts = 128

// stmts keeps the statements run on one pool prepared, by their SQL:
// SQLite parses and plans a statement when it is prepared, which cost as
// much as running the small queries of the hot paths. database/sql
// prepares a statement once on each connection of the pool.
//
// Preparing on the pool takes a connection, so a transaction, which holds
// one, never prepares: a statement it misses runs unprepared and is
// prepared before the next transaction begins.
type stmts struct {
	pool    *sql.DB
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool
}

func newStmts(pool *sql.DB) *stmts {
	return &stmts{pool: pool, m: make(map[string]*sql.Stmt), pending: make(map[string]bool)}
}

// lookup returns the prepared statement of query, or nil; a statement not
// yet prepared is noted for prepare while there is room.
func (s *stmts) lookup(query string) *sql.Stmt {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[query]; ok {
		return st
	}
	if len(s.m)+len(s.pending) < maxStmts {
		s.pending[query] = true
	}
	return nil
}

// prepare prepares the noted statements. The caller holds no connection
// of the pool.
func (s *stmts) prepare(ctx context.Context) {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return
	}
	queries := make([]string, 0, len(s.pending))
	for q := range s.pending {
		queries = append(queries, q)
	}
	clear(s.pending)
	s.mu.Unlock()
	for _, q := range queries {
		// A statement that does not prepare runs unprepared and fails there.
		st, err := s.pool.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		s.mu.Lock()
		if _, ok := s.m[q]; ok {
			_ = st.Close()
		} else {
			s.m[q] = st
		}
		s.mu.Unlock()
	}
}

// get returns the prepared statement of query, preparing it if there is
// room, or nil. The caller holds no connection of the pool.
func (s *stmts) get(ctx context.Context, query string) *sql.Stmt {
	if st := s.lookup(query); st != nil {
		return st
	}
	s.prepare(ctx)
	return s.lookup(query)
}

// close closes the prepared statements.
func (s *stmts) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for q, st := range s.m {
		_ = st.Close()
		delete(s.m, q)
	}
}

// QueryContext runs query on the pool.
func (s *stmts) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.pool.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query on the pool.
func (s *stmts) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.pool.QueryRowContext(ctx, query, args...)
}

// txn is a transaction that runs its statements prepared, through the
// statements of its pool.
type txn struct {
	*sql.Tx
	stmts *stmts
	// shared says that other writes share the transaction: its statements
	// are then not interrupted when their ctx ends, as an interrupt rolls
	// back the whole transaction.
	shared bool
}

// uninterrupted returns the ctx a statement of t runs with.
func (t *txn) uninterrupted(ctx context.Context) context.Context {
	if t.shared {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// QueryContext runs query in the transaction.
func (t *txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = t.uninterrupted(ctx)
	if st := t.stmts.lookup(query); st != nil {
		return t.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query in the transaction.
func (t *txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = t.uninterrupted(ctx)
	if st := t.stmts.lookup(query); st != nil {
		return t.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// ExecContext runs query in the transaction.
func (t *txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = t.uninterrupted(ctx)
	if st := t.stmts.lookup(query); st != nil {
		return t.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}
