package submission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Uploads and submits of one submission are ordered through two entries
// of the state bucket: a submit writes sealed.SubmitLockKey before it
// reads the attachments' tags, an upload holds sealed.AttachmentCommitKey
// while its object becomes the attachment and reads the submit's entry
// after taking its own, so whichever comes second sees the other. A holder
// renews its entry every entryRenew; one not renewed for entryStale was
// left by a gateway that stopped, and no longer counts.
const (
	entryRenew = 2 * time.Second
	entryStale = 5 * entryRenew
	// commitFor bounds the writing of an attachment's object once its
	// upload holds the commit entry.
	commitFor = 2 * time.Minute
	// commitPoll is how often a wait for another's entry looks again.
	commitPoll = 20 * time.Millisecond
)

// held reports whether entry e is renewed by a holder that still works.
func held(e bus.StateEntry) bool { return time.Since(e.Created) <= entryStale }

// lease renews an entry until stop.
type lease struct {
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// hold renews entry key, written at revision rev, every entryRenew until
// the lease stops; lost, unless nil, is called when a renewal fails (the
// entry was taken over, the bus does not answer), and renewing ends.
func (a *API) hold(key string, value []byte, rev uint64, lost func()) *lease {
	l := &lease{done: make(chan struct{})}
	l.wg.Go(func() {
		t := time.NewTicker(entryRenew)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), entryRenew)
			r, err := a.bus.UpdateState(ctx, key, value, rev)
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

// stop ends the renewals.
func (l *lease) stop() {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
}

// drop deletes entry key; one left lapses after entryStale.
func (a *API) drop(ctx context.Context, key string) {
	if err := a.bus.DeleteState(context.WithoutCancel(ctx), key); err != nil {
		a.api.Log.WarnContext(ctx, "state entry left; it lapses", "key", key, "err", err)
	}
}

// commitUpload takes the commit entry of attachment aid of sub, once
// another upload of it has finished, and checks that no submit is under
// way or done. It returns the function that gives the entry back; lost is
// called if the entry cannot be kept.
func (a *API) commitUpload(ctx context.Context, sub store.Submission, aid string, lost func()) (unlock func(), err error) {
	key := sealed.AttachmentCommitKey(sub.ID, aid)
	value := []byte("upload")
	var rev uint64
take:
	for {
		r, err := a.bus.CreateState(ctx, key, value)
		if err == nil {
			rev = r
			break
		}
		if !errors.Is(err, bus.ErrRevisionMismatch) {
			return nil, &uploadError{err: err}
		}
		e, err := a.bus.GetState(ctx, key)
		switch {
		case errors.Is(err, bus.ErrNotFound):
			continue
		case err != nil:
			return nil, &uploadError{err: err}
		case !held(e):
			if r, err := a.bus.UpdateState(ctx, key, value, e.Revision); err == nil {
				rev = r
				break take
			}
			continue
		}
		if err := sleepCtx(ctx, commitPoll); err != nil {
			return nil, &uploadError{err: err}
		}
	}
	l := a.hold(key, value, rev, lost)
	unlock = func() {
		l.stop()
		a.drop(ctx, key)
	}
	e, err := a.bus.GetState(ctx, sealed.SubmitLockKey(sub.ID))
	switch {
	case err == nil && held(e):
		unlock()
		return nil, problem.SubmissionState("submissionId",
			fmt.Sprintf("submission %s is being submitted; attachments are uploaded before submit", sub.ID))
	case err != nil && !errors.Is(err, bus.ErrNotFound):
		unlock()
		return nil, &uploadError{err: err}
	}
	if err := a.beforeSubmit(ctx, sub); err != nil {
		unlock()
		if _, ok := problem.As(err); !ok {
			err = &uploadError{err: err}
		}
		return nil, err
	}
	return unlock, nil
}

// lockSubmit writes the submit entry of sub, then waits for the uploads
// of its attachments that took their commit entry before. It returns the
// function that ends the entry's renewal and, unless keep (the submit is
// recorded), deletes it.
func (a *API) lockSubmit(ctx context.Context, sub store.Submission) (release func(keep bool), err error) {
	key := sealed.SubmitLockKey(sub.ID)
	value := []byte("submit")
	rev, err := a.bus.PutState(ctx, key, value)
	if err != nil {
		return nil, err
	}
	l := a.hold(key, value, rev, nil)
	release = func(keep bool) {
		l.stop()
		if !keep {
			a.drop(ctx, key)
		}
	}
	for _, aid := range sub.AnnouncedAttachments {
		for {
			e, err := a.bus.GetState(ctx, sealed.AttachmentCommitKey(sub.ID, aid))
			if errors.Is(err, bus.ErrNotFound) || err == nil && !held(e) {
				break
			}
			if err == nil {
				err = sleepCtx(ctx, commitPoll)
			}
			if err != nil {
				release(false)
				return nil, err
			}
		}
	}
	return release, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
