package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestCheckpointsOffTheWriter proves that the writer leaves checkpoints
// alone and that the checkpointer moves committed pages from the log into
// the database file within seconds, well below the 1,000 pages at which
// the writer used to.
func TestCheckpointsOffTheWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "amtsbote.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	var pages int
	if err := db.w.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&pages); err != nil || pages != 0 {
		t.Fatalf("the writer checkpoints after %d pages (%v), want never", pages, err)
	}
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE scratch (n INTEGER PRIMARY KEY, b BLOB)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	const rows, size = 128, 8 << 10 // 1 MiB, about 300 pages
	for i := range rows {
		if err := db.write(ctx, func(tx *txn) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO scratch (n, b) VALUES (?, ?)`, i, make([]byte, size))
			return err
		}); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() >= rows*size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes 10 s after %d bytes were committed: not checkpointed", fi.Size(), rows*size)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWritesShareTransactionsApart queues writes behind a slow one, so
// that they share transactions, and checks that each write's outcome is
// its own: a failing or panicking write leaves nothing behind and costs
// the others nothing.
func TestWritesShareTransactionsApart(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "amtsbote.db"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE scratch (n INTEGER PRIMARY KEY)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	insert := func(tx *txn, n int) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO scratch (n) VALUES (?)`, n)
		return err
	}

	release := make(chan struct{})
	started := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.write(ctx, func(tx *txn) error {
			close(started)
			<-release
			return insert(tx, 1000)
		})
	}()
	<-started

	const n = 60
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		txs   = map[*sql.Tx]int{}
		errs  = make([]error, n)
		fails = errors.New("refused")
	)
	for i := range n {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					errs[i] = fmt.Errorf("panicked: %v", v)
				}
			}()
			errs[i] = db.write(ctx, func(tx *txn) error {
				mu.Lock()
				txs[tx.Tx]++
				mu.Unlock()
				if err := insert(tx, i); err != nil {
					return err
				}
				switch i % 3 {
				case 1:
					return fails
				case 2:
					if i%2 == 0 {
						panic("write panicked")
					}
				}
				return nil
			})
		})
	}
	// The writes wait for the writer, which is still in the first one.
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}

	shared := 0
	for _, c := range txs {
		if c > 1 {
			shared += c
		}
	}
	if shared == 0 {
		t.Errorf("no two of %d queued writes shared a transaction (%d transactions)", n, len(txs))
	}
	for i := range n {
		var want error
		switch {
		case i%3 == 1:
			want = fails
		case i%3 == 2 && i%2 == 0:
			want = errors.New("panicked: write panicked")
		}
		got := errs[i]
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Errorf("write %d = %v, want %v", i, got, want)
		}
		var stored int
		err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM scratch WHERE n = ?`, i).Scan(&stored)
		if err != nil {
			t.Fatalf("count %d: %v", i, err)
		}
		if wantStored := map[bool]int{true: 1, false: 0}[want == nil]; stored != wantStored {
			t.Errorf("write %d: %d rows stored, want %d", i, stored, wantStored)
		}
	}
}

// TestWriteAfterClose answers a write after Close with an error instead of
// waiting for a writer that is gone.
func TestWriteAfterClose(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "amtsbote.db"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	err = db.write(context.Background(), func(*txn) error { return nil })
	if !errors.Is(err, errClosed) {
		t.Fatalf("write after close = %v, want %v", err, errClosed)
	}
}
