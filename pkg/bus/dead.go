package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/sealed"
)

// HeaderRedrivenFrom marks a re-driven message with the DEAD sequence of
// the dead letter it came from.
const HeaderRedrivenFrom = "Amtsbote-Redriven-From"

// HeaderRedrivenFor names the consumer a re-driven message is for: the
// one that gave it up. The stream's other consumers handled it already
// and pass it by; on INBOX, the delivery role would otherwise start the
// submission's callbacks again.
const HeaderRedrivenFor = "Amtsbote-Redriven-For"

// ErrRedriveTooSoon means a dead letter's original id is still within its
// stream's duplicates window, where a re-drive is dropped as a duplicate
// of the message that failed.
var ErrRedriveTooSoon = errors.New("re-drive too soon")

// DeadLetter is one message in DEAD.
type DeadLetter struct {
	// Seq is the dead letter's sequence in DEAD; it names it.
	Seq uint64 `json:"seq"`
	// At is when it was dead-lettered.
	At time.Time `json:"at"`
	// Reason is the last token of its subject.
	Reason string `json:"reason"`
	// Error is the last failure's text.
	Error string `json:"error,omitempty"`
	// Attempts is how many deliveries were made.
	Attempts int `json:"attempts"`
	// Consumer is the durable that gave up.
	Consumer string `json:"consumer,omitempty"`
	// Subject, Stream, StreamSeq and MsgID say where the original was:
	// Subject is where a re-drive publishes it, with MsgID as Nats-Msg-Id.
	Subject   string `json:"subject"`
	Stream    string `json:"stream,omitempty"`
	StreamSeq uint64 `json:"streamSeq,omitempty"`
	MsgID     string `json:"msgId,omitempty"`
	// DestinationID names the destination concerned, when known.
	DestinationID string `json:"destinationId,omitempty"`
	// Type and ID are the original's CloudEvent type and id.
	Type string `json:"type,omitempty"`
	ID   string `json:"id,omitempty"`
	// History lists the failed attempts, the latest last.
	History []Attempt `json:"history"`
	// Header and Data are the original message as it was published.
	Header nats.Header `json:"-"`
	Data   []byte      `json:"-"`
}

// Audit actions of acts on dead letters, as the audit log names them.
const (
	AuditDeadRedrive = "dead-letter.redrive"
	AuditDeadPurge   = "dead-letter.purge"
)

// AuditObject names d in the audit log: dead-letter:<seq>.
func (d DeadLetter) AuditObject() string { return "dead-letter:" + strconv.FormatUint(d.Seq, 10) }

// AuditRecord is what the audit log keeps of d: everything but the
// original's headers and body.
func (d DeadLetter) AuditRecord() json.RawMessage {
	b, _ := json.Marshal(d) // strings, numbers, times and attempts always marshal
	return b
}

// DeadFilter selects dead letters; zero fields select all.
type DeadFilter struct {
	// Reason selects one reason.
	Reason string
	// DestinationID selects the dead letters of one destination.
	DestinationID string
}

// subject is the DEAD filter subject of f.
func (f DeadFilter) subject() (string, error) {
	if f.Reason == "" {
		return PrefixDead + ".>", nil
	}
	return DeadSubject(f.Reason)
}

// match reports whether d passes f's header conditions.
func (f DeadFilter) match(d DeadLetter) bool {
	return f.DestinationID == "" || strings.EqualFold(f.DestinationID, d.DestinationID)
}

// maxDeadScan bounds how many dead letters one listing reads.
const maxDeadScan = 100000

// DeadLetters lists the dead letters f selects, oldest first, skipping
// offset of them and returning at most limit, and how many f selects in
// all. limit 0 or less means all of them.
func (b *Bus) DeadLetters(ctx context.Context, f DeadFilter, offset, limit int) ([]DeadLetter, int, error) {
	var (
		out   []DeadLetter
		total int
	)
	err := b.scanDead(ctx, f, func(d DeadLetter) bool {
		if total >= offset && (limit <= 0 || len(out) < limit) {
			out = append(out, d)
		}
		total++
		return true
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list dead letters: %w", err)
	}
	return out, total, nil
}

// scanDead calls fn with every dead letter f selects, oldest first, until
// fn returns false.
func (b *Bus) scanDead(ctx context.Context, f DeadFilter, fn func(DeadLetter) bool) error {
	subject, err := f.subject()
	if err != nil {
		return err
	}
	st, err := b.stream(ctx, StreamDead)
	if err != nil {
		return err
	}
	for seq, n := uint64(1), 0; n < maxDeadScan; n++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		seq = m.Sequence + 1
		d := deadLetterOf(m)
		if f.match(d) && !fn(d) {
			return nil
		}
	}
	return nil
}

// DeadLetter returns the dead letter at seq; ErrNotFound if there is none.
func (b *Bus) DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	st, err := b.stream(ctx, StreamDead)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && !strings.HasPrefix(m.Subject, PrefixDead+".")) {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return deadLetterOf(m), nil
}

// deadLetterOf reads a stored dead letter. What its headers do not say
// stays empty: a dead letter is read, never refused.
func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	d := DeadLetter{
		Seq:           m.Sequence,
		At:            m.Time.UTC(),
		Reason:        strings.TrimPrefix(m.Subject, PrefixDead+"."),
		Error:         h.Get(HeaderDeadError),
		Consumer:      h.Get(HeaderDeadConsumer),
		Subject:       h.Get(HeaderOriginalSubject),
		Stream:        h.Get(HeaderOriginalStream),
		MsgID:         h.Get(HeaderOriginalMsgID),
		DestinationID: h.Get(HeaderDestination),
		Type:          h.Get(hType),
		ID:            h.Get(hID),
		History:       []Attempt{},
		Header:        h,
		Data:          m.Data,
	}
	d.Attempts, _ = strconv.Atoi(h.Get(HeaderDeadAttempts))
	d.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderOriginalSequence), 10, 64)
	if raw := h.Get(HeaderDeadHistory); raw != "" {
		var hist []Attempt
		if json.Unmarshal([]byte(raw), &hist) == nil {
			d.History = hist
		}
	}
	return d
}

// Redrive publishes the dead letter at seq back to the subject it failed
// on, with its original headers, body and Nats-Msg-Id, and then deletes
// it from DEAD. A re-drive repeated within the duplicates window (by a
// retry, or a second operator) is dropped by the stream and publishes
// nothing twice.
//
// It returns ErrNotFound when there is no such dead letter, and
// ErrRedriveTooSoon, changing nothing, when the stream drops the re-drive
// as a duplicate of the original, whose id is still within its
// duplicates window.
//
// Each of checks may refuse the dead letter first, changing nothing.
func (b *Bus) Redrive(ctx context.Context, seq uint64, checks ...RedriveCheck) (DeadLetter, error) {
	d, err := b.DeadLetter(ctx, seq)
	if err != nil {
		return d, fmt.Errorf("re-drive: %w", err)
	}
	if d.Subject == "" || checkPublishSubject(d.Subject) != nil || !redrivable(d.Stream, d.Subject) {
		return d, fmt.Errorf("re-drive dead letter %d: original subject %q of stream %q: only messages of INGRESS, INBOX and CALLBACKS are re-driven: %w",
			seq, d.Subject, d.Stream, ErrInvalidSubject)
	}
	for _, check := range checks {
		if err := check(ctx, d); err != nil {
			return d, fmt.Errorf("re-drive dead letter %d: %w", seq, err)
		}
	}
	msgID := d.MsgID
	if msgID == "" {
		// The original had no id; its place in its stream names it.
		msgID = "redrive." + d.Stream + "." + strconv.FormatUint(d.StreamSeq, 10)
	}
	m := nats.NewMsg(d.Subject)
	for k, v := range d.Header {
		if strings.HasPrefix(strings.ToLower(k), "nats-") || isDeadHeader(k) {
			continue
		}
		m.Header[k] = v
	}
	m.Header.Set(HeaderRedrivenFrom, strconv.FormatUint(seq, 10))
	if d.Consumer != "" {
		// A consumer removed since would leave the message to none: then
		// every consumer of the stream has it again.
		_, err := b.js.Consumer(ctx, d.Stream, d.Consumer)
		switch {
		case err == nil:
			m.Header.Set(HeaderRedrivenFor, d.Consumer)
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return d, fmt.Errorf("re-drive dead letter %d: consumer %s of %s: %w", seq, d.Consumer, d.Stream, err)
		}
	}
	m.Data = d.Data
	ack, err := b.js.PublishMsg(ctx, m, jetstream.WithMsgID(msgID))
	if err != nil {
		return d, fmt.Errorf("re-drive dead letter %d to %s: %w", seq, d.Subject, err)
	}
	marker := redrivenKey(seq)
	if ack.Duplicate {
		// Dropped as the original, or as an earlier re-drive of this dead
		// letter whose removal failed; only the marker tells them apart.
		if _, err := b.GetState(ctx, marker); err != nil {
			window, _ := b.duplicatesOf(ctx, d.Subject)
			return d, fmt.Errorf("re-drive dead letter %d: %s still holds its id %s as a duplicate (window %s): %w",
				seq, ack.Stream, msgID, window, ErrRedriveTooSoon)
		}
	} else if _, err := b.PutState(ctx, marker, []byte(msgID)); err != nil {
		return d, fmt.Errorf("re-drive dead letter %d: published, but not marked: %w", seq, err)
	}
	if err := b.deleteDead(ctx, seq); err != nil {
		if errors.Is(err, ErrNotFound) && !ack.Duplicate {
			// Purged meanwhile: the publish above was the re-drive.
			return d, nil
		}
		return d, fmt.Errorf("re-drive dead letter %d: published, but not deleted from %s: %w", seq, StreamDead, err)
	}
	return d, nil
}

// RedriveCheck refuses a dead letter that is not to be re-driven.
type RedriveCheck func(ctx context.Context, d DeadLetter) error

// ErrForged means a dead letter's body is not a message of the stream and
// subject it names.
var ErrForged = errors.New("not a message of its stream")

// InboxRecorded refuses an INBOX dead letter unless its body is a routed
// submission for the destination its subject names that recorded accepts
// (store.CheckRecorded). A dead letter's headers and body are written by
// whoever may publish to DEAD, a subscriber's user among them; re-driven,
// another destination's submission would reach this one's inbox with
// Amtsbote's rights.
func InboxRecorded(recorded func(context.Context, sealed.Submission) error) RedriveCheck {
	return func(ctx context.Context, d DeadLetter) error {
		if d.Stream != StreamInbox {
			return nil
		}
		addr, err := ParseInboxSubject(d.Subject)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrForged, err)
		}
		sub, err := sealed.Decode(d.Data)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrForged, err)
		}
		if !strings.EqualFold(sub.DestinationID, addr.DestinationID) {
			return fmt.Errorf("%w: submission %s for destination %s on the inbox subject of %s",
				ErrForged, sub.SubmissionID, sub.DestinationID, addr.DestinationID)
		}
		return recorded(ctx, sub)
	}
}

// redrivable reports whether a dead letter naming stream and subject may
// be published again: only to the streams whose consumers dead-letter
// what they cannot handle, each on its own subjects. A dead letter's
// headers are written by whoever may publish to DEAD, a subscriber's user
// among them; re-driving one to REGISTRY or EVENTS would publish, with
// Amtsbote's rights, what that user wrote.
func redrivable(stream, subject string) bool {
	prefix, ok := map[string]string{StreamIngress: PrefixIngress, StreamInbox: PrefixInbox, StreamCallbacks: PrefixCallback}[stream]
	return ok && strings.HasPrefix(subject, prefix+".")
}

// deadActFor bounds a re-drive or purge with its audit entry. Begun, it is
// carried through when the operator's request or command is interrupted:
// a dead letter gone, or re-driven, without its audit entry is what must
// not be.
const deadActFor = 30 * time.Second

// DeadActContext is the context of one such act begun under ctx.
func DeadActContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), deadActFor)
}

// PurgeDead deletes the dead letter at seq and returns what it was;
// ErrNotFound if there is none.
func (b *Bus) PurgeDead(ctx context.Context, seq uint64) (DeadLetter, error) {
	d, err := b.DeadLetter(ctx, seq)
	if err != nil {
		return d, fmt.Errorf("purge: %w", err)
	}
	if err := b.deleteDead(ctx, seq); err != nil {
		return d, fmt.Errorf("purge dead letter %d: %w", seq, err)
	}
	return d, nil
}

// deleteDead removes seq from DEAD; a dead letter deleted meanwhile is
// ErrNotFound.
func (b *Bus) deleteDead(ctx context.Context, seq uint64) error {
	st, err := b.stream(ctx, StreamDead)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return err
	}
	return nil
}

// duplicatesOf returns the duplicates window of the stream that takes
// subject.
func (b *Bus) duplicatesOf(ctx context.Context, subject string) (time.Duration, error) {
	name, err := b.js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return 0, fmt.Errorf("stream of %s: %w", subject, err)
	}
	st, err := b.stream(ctx, name)
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().Config.Duplicates, nil
}

// redrivenKey names the state entry marking dead letter seq as
// published again.
func redrivenKey(seq uint64) string { return "redriven." + strconv.FormatUint(seq, 10) }

// isDeadHeader reports whether k is one of the headers deadLetter adds.
func isDeadHeader(k string) bool {
	switch lk := strings.ToLower(k); {
	case strings.HasPrefix(lk, "amtsbote-dead-"), strings.HasPrefix(lk, "amtsbote-original-"),
		lk == strings.ToLower(HeaderRedrivenFrom), lk == strings.ToLower(HeaderRedrivenFor):
		return true
	}
	return false
}
