package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// ContentTypeSET is the datacontenttype of an EVENTS message: the compact
// security event token, as receivers post it.
const ContentTypeSET = "application/jose"

// ErrStale means a publish expected the case's last event to be another
// than it is: someone published to the case in between.
var ErrStale = errors.New("case changed meanwhile")

// EventOption changes how PublishEvent publishes.
type EventOption func(*eventOptions)

type eventOptions struct {
	expect    uint64
	hasExpect bool
}

// ExpectLast makes PublishEvent publish only when the case's last event is
// the one at stream sequence seq, else fail with ErrStale: events of one
// case are decided one at a time.
func ExpectLast(seq uint64) EventOption {
	return func(o *eventOptions) { o.expect, o.hasExpect = seq, true }
}

// PublishEvent publishes the compact SET token, whose claims are c, to its
// case's EVENTS subject: a CloudEvent of type sealed.TypeEvent from source
// with id and Nats-Msg-Id = c.JTI, so a repeat within the duplicates
// window is dropped (PubAck.Duplicate), carrying ctx's trace.
func (b *Bus) PublishEvent(ctx context.Context, source string, c set.Claims, token string, opts ...EventOption) (*jetstream.PubAck, error) {
	var o eventOptions
	for _, opt := range opts {
		opt(&o)
	}
	sid, err := c.SubmissionID()
	if err != nil {
		return nil, fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	caseID, err := c.CaseID()
	if err != nil {
		return nil, fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	subject, err := EventsSubject(caseID)
	if err != nil {
		return nil, fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	ev := event.New()
	ev.SetID(c.JTI)
	ev.SetSource(source)
	ev.SetType(sealed.TypeEvent)
	ev.SetSubject(sid)
	ev.SetTime(c.IssuedAt)
	if err := ev.SetData(ContentTypeSET, []byte(token)); err != nil {
		return nil, fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	var popts []jetstream.PublishOpt
	if o.hasExpect {
		popts = append(popts, jetstream.WithExpectLastSequencePerSubject(o.expect))
	}
	ack, err := b.publish(ctx, subject, ev, c.JTI, popts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil, fmt.Errorf("publish event %s: %w", c.JTI, ErrStale)
		}
		return nil, fmt.Errorf("publish event %s: %w", c.JTI, err)
	}
	return ack, nil
}

// CaseEvent is one message of a case's EVENTS subject.
type CaseEvent struct {
	// Seq is the message's stream sequence.
	Seq uint64
	// Token is the compact SET.
	Token string
}

// Read reads e's claims without verifying them (what EVENTS holds was
// verified, or signed by Amtsbote, before it was published), with the
// submission and the event URI they name; ok is false for a token that
// does not parse.
func (e CaseEvent) Read() (c set.Claims, submissionID, uri string, ok bool) {
	_, c, err := set.Parse(e.Token)
	if err != nil {
		return set.Claims{}, "", "", false
	}
	submissionID, _ = c.SubmissionID()
	uri, _, _ = c.Event()
	return c, submissionID, uri, true
}

// maxCaseEvents bounds what CaseEvents reads of one case.
const maxCaseEvents = 1000

// CaseEvents reads every event of a case from EVENTS, the source of truth,
// in stream order, from the stream leader, so that what was published
// before is seen.
func (b *Bus) CaseEvents(ctx context.Context, caseID string) ([]CaseEvent, error) {
	subject, err := EventsSubject(caseID)
	if err != nil {
		return nil, fmt.Errorf("events of case %s: %w", caseID, err)
	}
	st, err := b.stream(ctx, StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("events of case %s: %w", caseID, err)
	}
	if b.direct.usable(b.nc, st.CachedInfo().Config) {
		out, err := b.directBatch(ctx, StreamEvents, subject, 1, maxCaseEvents+1)
		switch {
		case err == nil && len(out) > maxCaseEvents:
			return nil, fmt.Errorf("events of case %s: more than %d", caseID, maxCaseEvents)
		case err == nil:
			return out, nil
		case !errors.Is(err, errNoDirect):
			return nil, fmt.Errorf("events of case %s: %w", caseID, err)
		}
	}
	var out []CaseEvent
	for seq := uint64(1); len(out) < maxCaseEvents; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("events of case %s: %w", caseID, err)
		}
		out = append(out, CaseEvent{Seq: m.Sequence, Token: strings.TrimSpace(string(m.Data))})
		seq = m.Sequence + 1
	}
	return nil, fmt.Errorf("events of case %s: more than %d", caseID, maxCaseEvents)
}

// EventAt reads the EVENTS message at stream sequence seq.
func (b *Bus) EventAt(ctx context.Context, seq uint64) (CaseEvent, error) {
	st, err := b.stream(ctx, StreamEvents)
	if err != nil {
		return CaseEvent{}, fmt.Errorf("event at %d: %w", seq, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return CaseEvent{}, fmt.Errorf("event at %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return CaseEvent{}, fmt.Errorf("event at %d: %w", seq, err)
	}
	return CaseEvent{Seq: m.Sequence, Token: strings.TrimSpace(string(m.Data))}, nil
}

// stream returns a handle of the stream name, looking it up once.
func (b *Bus) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	b.smu.Lock()
	defer b.smu.Unlock()
	if st, ok := b.streams[name]; ok {
		return st, nil
	}
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	if b.streams == nil {
		b.streams = make(map[string]jetstream.Stream)
	}
	b.streams[name] = st
	return st, nil
}

// PublishSubmission publishes a sealed submission accepted by the gateway
// to INGRESS, under the applicant's place and the service: with Nats-Msg-Id
// = the submission id, so a retried submit never routes twice.
func (b *Bus) PublishSubmission(ctx context.Context, source string, s sealed.Submission, at time.Time) error {
	subject, err := IngressSubjectOf(s.ARS, s.Service)
	if err != nil {
		return fmt.Errorf("publish submission %s: %w", s.SubmissionID, err)
	}
	return b.publishSealed(ctx, subject, source, sealed.TypeSubmitted, s, at)
}

// PublishRouted publishes a routed submission to the INBOX subject of its
// destination, whose home region is homeARS, with Nats-Msg-Id = the
// submission id. data is the INGRESS message's body, passed on unchanged;
// submitted, when INGRESS stored it, travels as ExtensionSubmittedTime
// unless zero.
func (b *Bus) PublishRouted(ctx context.Context, source, homeARS string, s sealed.Submission, data []byte, submitted, at time.Time) (*jetstream.PubAck, error) {
	subject, err := InboxSubject(homeARS, s.DestinationID)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", s.SubmissionID, err)
	}
	ev := event.New()
	ev.SetID(s.SubmissionID)
	ev.SetSource(source)
	ev.SetType(sealed.TypeRouted)
	ev.SetSubject(s.SubmissionID)
	ev.SetTime(at)
	if !submitted.IsZero() {
		ev.SetExtension(ExtensionSubmittedTime, submitted.UTC().Format(time.RFC3339Nano))
	}
	if err := ev.SetData("application/json", data); err != nil {
		return nil, fmt.Errorf("route %s: %w", s.SubmissionID, err)
	}
	ack, err := b.publish(ctx, subject, ev, s.SubmissionID)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", s.SubmissionID, err)
	}
	return ack, nil
}

func (b *Bus) publishSealed(ctx context.Context, subject, source, typ string, s sealed.Submission, at time.Time) error {
	data, err := s.Encode()
	if err != nil {
		return fmt.Errorf("publish submission %s: %w", s.SubmissionID, err)
	}
	ev := event.New()
	ev.SetID(s.SubmissionID)
	ev.SetSource(source)
	ev.SetType(typ)
	ev.SetSubject(s.SubmissionID)
	ev.SetTime(at)
	if err := ev.SetData("application/json", data); err != nil {
		return fmt.Errorf("publish submission %s: %w", s.SubmissionID, err)
	}
	if _, err := b.publish(ctx, subject, ev, s.SubmissionID); err != nil {
		return fmt.Errorf("publish submission %s: %w", s.SubmissionID, err)
	}
	return nil
}

// unknownLeika is the ingress subject's service token for a service
// identifier that is no LeiKa URN; LeiKa keys start with 99.
const unknownLeika = "00000000000000"

// IngressSubjectOf returns the INGRESS subject of a submission for the
// applicant's place ars (an ARS prefix; shorter ones are padded as at
// InboxSubject) and the service URN: a service that is no LeiKa service
// is filed under the key 00000000000000.
func IngressSubjectOf(ars, service string) (string, error) {
	key := unknownLeika
	if k, err := leika.FromURN(service); err == nil {
		key = k.String()
	}
	return IngressSubject(ars, key)
}
