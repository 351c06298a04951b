package submission

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// Uploads and submits of one submission are ordered through two entries
// of the state bucket, each held as a bus lock: a submit writes
// sealed.SubmitLockKey before it reads the attachments' tags, an upload
// holds sealed.AttachmentCommitKey while its object becomes the attachment
// and reads the submit's entry after taking its own, so whichever comes
// second sees the other.

// commitFor bounds the writing of an attachment's object once its upload
// holds the commit entry.
const commitFor = 2 * time.Minute

// drop releases the lease of entry key; one left lapses.
func (a *API) drop(ctx context.Context, l *bus.Lease, key string) {
	if err := l.Release(ctx); err != nil {
		a.api.Log.WarnContext(ctx, "state entry left; it lapses", "key", key, "err", err)
	}
}

// commitUpload takes the commit entry of attachment aid of sub, once
// another upload of it has finished, and checks that no submit is under
// way or done. It returns the function that gives the entry back; lost is
// called if the entry cannot be kept.
func (a *API) commitUpload(ctx context.Context, sub store.Submission, aid string, lost func()) (unlock func(), err error) {
	key := sealed.AttachmentCommitKey(sub.ID, aid)
	l, err := a.bus.Lock(ctx, key, []byte("upload"), lost)
	if err != nil {
		return nil, &uploadError{err: err}
	}
	unlock = func() { a.drop(ctx, l, key) }
	e, err := a.bus.GetState(ctx, sealed.SubmitLockKey(sub.ID))
	switch {
	case err == nil && bus.Held(e):
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
	rev, err := a.bus.PutState(ctx, key, []byte("submit"))
	if err != nil {
		return nil, err
	}
	l := a.bus.Hold(key, []byte("submit"), rev, nil)
	release = func(keep bool) {
		if keep {
			l.Stop()
			return
		}
		a.drop(ctx, l, key)
	}
	for _, aid := range sub.AnnouncedAttachments {
		if err := a.bus.WaitFree(ctx, sealed.AttachmentCommitKey(sub.ID, aid)); err != nil {
			release(false)
			return nil, err
		}
	}
	return release, nil
}
