package bus

import (
	"context"
	"errors"
	"sync"
	"time"
)

// An entry of the state bucket can be held by one process at a time, as a
// lock across processes: its holder renews it every LockRenew, and one not
// renewed for LockStale was left by a process that stopped and no longer
// counts. Entries are compared by the server's write time, so the
// processes' clocks must agree to well within LockStale.
const (
	LockRenew = 2 * time.Second
	LockStale = 5 * LockRenew
	// lockPoll is how often a wait for a held entry looks again.
	lockPoll = 20 * time.Millisecond
)

// Held reports whether entry e is renewed by a holder that still works.
func Held(e StateEntry) bool { return time.Since(e.Created) <= LockStale }

// Lease renews a state entry until it is stopped.
type Lease struct {
	b    *Bus
	key  string
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// Hold renews entry key, written at revision rev, every LockRenew until
// the lease stops; lost, unless nil, is called when a renewal fails (the
// entry was taken over, the bus does not answer), and renewing ends.
func (b *Bus) Hold(key string, value []byte, rev uint64, lost func()) *Lease {
	l := &Lease{b: b, key: key, done: make(chan struct{})}
	l.wg.Go(func() {
		t := time.NewTicker(LockRenew)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), LockRenew)
			r, err := b.UpdateState(ctx, key, value, rev)
			cancel()
			if err != nil {
				if lost != nil {
					lost()
				}
				return
			}
			rev = r
		}
	})
	return l
}

// Lock takes entry key once no other holder keeps it, waiting until ctx
// ends, and holds it (see Hold).
func (b *Bus) Lock(ctx context.Context, key string, value []byte, lost func()) (*Lease, error) {
	for {
		rev, err := b.CreateState(ctx, key, value)
		if err == nil {
			return b.Hold(key, value, rev, lost), nil
		}
		if !errors.Is(err, ErrRevisionMismatch) {
			return nil, err
		}
		e, err := b.GetState(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return nil, err
		case !Held(e):
			if rev, err := b.UpdateState(ctx, key, value, e.Revision); err == nil {
				return b.Hold(key, value, rev, lost), nil
			}
			continue
		}
		if err := pause(ctx, lockPoll); err != nil {
			return nil, err
		}
	}
}

// WaitFree waits until no holder keeps entry key.
func (b *Bus) WaitFree(ctx context.Context, key string) error {
	for {
		e, err := b.GetState(ctx, key)
		if errors.Is(err, ErrNotFound) || err == nil && !Held(e) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := pause(ctx, lockPoll); err != nil {
			return err
		}
	}
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Stop ends the renewals; the entry lapses after LockStale.
func (l *Lease) Stop() {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
}

// Release ends the renewals and deletes the entry, also when ctx has
// ended; an entry it could not delete lapses after LockStale.
func (l *Lease) Release(ctx context.Context) error {
	l.Stop()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LockRenew)
	defer cancel()
	return l.b.DeleteState(ctx, l.key)
}
