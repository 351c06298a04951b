package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// The outbox holds Amtsbote's own events (create- and submit-submission)
// accepted by a request but not yet signed and published: one small
// key-value write JetStream acknowledges durably, so the request answers
// without waiting for an RSA signature. The signer role claims each entry,
// signs, publishes it to EVENTS and deletes it.

// OutboxEntry is one event waiting to be signed and published.
type OutboxEntry struct {
	// Claims of the event, complete with jti and iat.
	Claims set.Claims `json:"claims"`
	// Traceparent of the request that accepted it.
	Traceparent string `json:"traceparent,omitempty"`
	// ClaimedBy and ClaimedUntil say which signer works on it; another
	// takes it over when the claim runs out.
	ClaimedBy    string    `json:"claimedBy,omitempty"`
	ClaimedUntil time.Time `json:"claimedUntil,omitzero"`

	// Revision is the entry's key-value revision, for Claim.
	Revision uint64 `json:"-"`
}

// Key returns the entry's key in BucketState.
func (e OutboxEntry) Key() string { return sealed.OutboxKey(e.Claims.JTI) }

// Enqueue writes an event to the outbox unless an entry with its jti is
// there, carrying ctx's trace. Once it returns nil the event will be
// published by a signer.
func (b *Bus) Enqueue(ctx context.Context, c set.Claims) error {
	raw, err := json.Marshal(OutboxEntry{Claims: c, Traceparent: Traceparent(ctx)})
	if err != nil {
		return fmt.Errorf("outbox %s: %w", c.JTI, err)
	}
	if _, err := b.CreateState(ctx, sealed.OutboxKey(c.JTI), raw); err != nil && !errors.Is(err, ErrRevisionMismatch) {
		return fmt.Errorf("outbox %s: %w", c.JTI, err)
	}
	return nil
}

// OutboxEntryOf reads the outbox entry of the event jti; ErrNotFound when
// there is none (never queued, or published and deleted).
func (b *Bus) OutboxEntryOf(ctx context.Context, jti string) (OutboxEntry, error) {
	se, err := b.GetState(ctx, sealed.OutboxKey(jti))
	if err != nil {
		return OutboxEntry{}, fmt.Errorf("outbox %s: %w", jti, err)
	}
	var e OutboxEntry
	if err := json.Unmarshal(se.Value, &e); err != nil || e.Key() != se.Key {
		return OutboxEntry{}, fmt.Errorf("outbox %s: unreadable entry", jti)
	}
	e.Revision = se.Revision
	return e, nil
}

// Claim marks e as worked on by signer until until, unless someone
// changed it since it was read: then ErrRevisionMismatch.
func (b *Bus) Claim(ctx context.Context, e OutboxEntry, signer string, until time.Time) (OutboxEntry, error) {
	e.ClaimedBy, e.ClaimedUntil = signer, until
	raw, err := json.Marshal(e)
	if err != nil {
		return e, fmt.Errorf("claim %s: %w", e.Claims.JTI, err)
	}
	rev, err := b.UpdateState(ctx, e.Key(), raw, e.Revision)
	if err != nil {
		return e, fmt.Errorf("claim %s: %w", e.Claims.JTI, err)
	}
	e.Revision = rev
	return e, nil
}

// WatchOutbox hands every outbox entry to fn: those there now, then each
// one written, until ctx ends. An entry that cannot be read is deleted.
func (b *Bus) WatchOutbox(ctx context.Context, fn func(OutboxEntry)) error {
	kv, err := b.stateBucket(ctx)
	if err != nil {
		return fmt.Errorf("watch outbox: %w", err)
	}
	w, err := kv.Watch(ctx, sealed.OutboxPrefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch outbox: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case kve, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch outbox: watcher closed")
			}
			if kve == nil {
				continue // the entries there at the start are all delivered
			}
			var e OutboxEntry
			if err := json.Unmarshal(kve.Value(), &e); err != nil || kve.Key() != e.Key() {
				_ = b.DeleteState(ctx, kve.Key())
				continue
			}
			e.Revision = kve.Revision()
			fn(e)
		}
	}
}

// Outbox returns the entries in the outbox now.
func (b *Bus) Outbox(ctx context.Context) ([]OutboxEntry, error) {
	return b.OutboxHead(ctx, 0)
}

// OutboxHead returns the first n entries in the outbox now, the longest
// waiting first (all of them when n ≤ 0). An entry rewritten while it is
// read (a signer claiming it) can be missing: the bucket keeps one
// revision per key, and the listing skips the one it replaced.
func (b *Bus) OutboxHead(ctx context.Context, n int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := b.listState(ctx, sealed.OutboxPrefix, func(se StateEntry) bool {
		var e OutboxEntry
		if err := json.Unmarshal(se.Value, &e); err != nil || e.Key() != se.Key {
			return true
		}
		e.Revision = se.Revision
		out = append(out, e)
		return n <= 0 || len(out) < n
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return out, nil
}

// OutboxBacklog returns how many events wait in the outbox and when the
// one waiting longest was last written (zero when none waits): what a
// signer has yet to do, readable while no signer runs.
func (b *Bus) OutboxBacklog(ctx context.Context) (n uint64, oldest time.Time, err error) {
	s, err := b.stream(ctx, stateStream)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("outbox backlog: %w", err)
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     stateSubject(sealed.OutboxPrefix + ">"),
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: outboxListIdle,
		MemoryStorage:     true,
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("outbox backlog: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outboxListIdle)
		defer cancel()
		_ = s.DeleteConsumer(ctx, c.CachedInfo().Name)
	}()
	n = c.CachedInfo().NumPending
	// Releases before DeleteState purged deleted entries with a key-value
	// purge, whose marker stays for the bucket's TTL: no event waits under
	// one. Those before the oldest entry are purged now and not counted
	// (at most maxMarkers per call); one behind it is counted until it
	// comes first.
	for purged := 0; n > 0 && oldest.IsZero() && purged < maxMarkers; {
		batch, err := c.FetchNoWait(64)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("outbox backlog: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if !oldest.IsZero() {
				continue
			}
			if m.Headers().Get("KV-Operation") != "" {
				_ = b.purge(ctx, stateStream, m.Subject())
				purged++
				n--
				continue
			}
			if meta, err := m.Metadata(); err == nil {
				oldest = meta.Timestamp
			}
		}
		if err := batch.Error(); err != nil {
			return 0, time.Time{}, fmt.Errorf("outbox backlog: %w", err)
		}
		if got == 0 {
			break
		}
	}
	return n, oldest, nil
}

// maxMarkers bounds the markers one OutboxBacklog purges.
const maxMarkers = 10000

// ListState returns the entries of BucketState whose keys begin with
// prefix (all of them for ""), in the order they were last written.
func (b *Bus) ListState(ctx context.Context, prefix string) ([]StateEntry, error) {
	var out []StateEntry
	if err := b.listState(ctx, prefix, func(e StateEntry) bool { out = append(out, e); return true }); err != nil {
		return nil, fmt.Errorf("list state %q: %w", prefix, err)
	}
	return out, nil
}

// listState hands fn the last revision of each key under prefix until fn
// returns false or none is left.
//
// It reads through a consumer of its own and asks without waiting, so that
// a listing ends when nothing more is there: a key-value watch or key
// listing learns that it has caught up from the count pending when it
// began, and a key purged before it was delivered (DeleteState leaves no
// marker) would leave it waiting for ever.
func (b *Bus) listState(ctx context.Context, prefix string, fn func(StateEntry) bool) error {
	s, err := b.stream(ctx, stateStream)
	if err != nil {
		return err
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     stateSubject(prefix + ">"),
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: outboxListIdle,
		MemoryStorage:     true,
	})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outboxListIdle)
		defer cancel()
		_ = s.DeleteConsumer(ctx, c.CachedInfo().Name)
	}()
	subjectPrefix := stateSubject("")
	for {
		batch, err := c.FetchNoWait(outboxListBatch)
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if m.Headers().Get("KV-Operation") != "" {
				continue // a delete or purge marker
			}
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			e := StateEntry{
				Key: strings.TrimPrefix(m.Subject(), subjectPrefix), Value: m.Data(),
				Revision: meta.Sequence.Stream, Created: meta.Timestamp,
			}
			if !fn(e) {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if got < outboxListBatch {
			return nil
		}
	}
}

// outboxListBatch is how many entries one request of a state listing asks
// for; outboxListIdle is how long the server keeps a listing's consumer
// that was not deleted.
const (
	outboxListBatch = 256
	outboxListIdle  = 10 * time.Second
)
