package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/pkg/tracing"
)

// CloudEvents binary mode over NATS headers, per the CloudEvents NATS
// protocol binding: every attribute is a header named "ce-" + attribute,
// except datacontenttype, which is "content-type"; the data is the message
// body. The core sdk-go module has no NATS binding (it lives in a separate
// protocol module built on its own nats.go), so the mapping is here.
const (
	// HeaderPrefix starts every CloudEvents attribute header.
	HeaderPrefix = "ce-"
	// HeaderContentType carries the datacontenttype attribute.
	HeaderContentType = "content-type"
	// SpecVersion is the only CloudEvents version this package reads and writes.
	SpecVersion = event.CloudEventsVersionV1
	// ExtensionTraceparent is the W3C trace context extension attribute.
	ExtensionTraceparent = "traceparent"
	// ExtensionSubmittedTime is, on a routed event, when INGRESS stored
	// the submission (RFC 3339 with fractions): the submit SET's iat has
	// whole seconds only.
	ExtensionSubmittedTime = "submittedtime"
)

// ErrInvalidEvent means a CloudEvent, or the headers that should carry one,
// breaks the CloudEvents rules or this package's mapping.
var ErrInvalidEvent = errors.New("invalid cloudevent")

// ErrMissingMsgID means a publish lacked the Nats-Msg-Id that keeps retries
// from duplicating.
var ErrMissingMsgID = errors.New("missing message id")

// Header names of the required and optional context attributes.
const (
	hSpecVersion = HeaderPrefix + "specversion"
	hID          = HeaderPrefix + "id"
	hSource      = HeaderPrefix + "source"
	hType        = HeaderPrefix + "type"
	hSubject     = HeaderPrefix + "subject"
	hTime        = HeaderPrefix + "time"
	hDataSchema  = HeaderPrefix + "dataschema"
)

// Publish sends ev in binary mode to subject and waits for the stream's
// acknowledgement. msgID becomes Nats-Msg-Id (the submission id or event
// jti), so a retry within the stream's duplicates window is dropped and
// answered with PubAck.Duplicate set. ev carries ctx's trace as its
// traceparent extension unless it has one.
func (b *Bus) Publish(ctx context.Context, subject string, ev event.Event, msgID string) (*jetstream.PubAck, error) {
	return b.publish(ctx, subject, ev, msgID)
}

func (b *Bus) publish(ctx context.Context, subject string, ev event.Event, msgID string, opts ...jetstream.PublishOpt) (ack *jetstream.PubAck, err error) {
	if b.tracing {
		var end func(error)
		ctx, end = tracing.Start(ctx, b.tracer, "publish "+subjectPrefix(subject), trace.SpanKindProducer,
			attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", subject), attribute.String("messaging.message.id", msgID))
		defer func() { end(err) }()
	}
	if err := checkPublishSubject(subject); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if msgID == "" {
		return nil, fmt.Errorf("publish to %s: %w", subject, ErrMissingMsgID)
	}
	if err := checkHeaderValue(msgID); err != nil {
		return nil, fmt.Errorf("publish to %s: message id %q: %w", subject, msgID, err)
	}
	if _, ok := ev.Extensions()[ExtensionTraceparent]; !ok {
		if tp := Traceparent(ctx); tp != "" {
			ev.SetExtension(ExtensionTraceparent, tp)
		}
	}
	msg, err := EventToMsg(subject, ev)
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	ack, err = b.js.PublishMsg(ctx, msg, append([]jetstream.PublishOpt{jetstream.WithMsgID(msgID)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	return ack, nil
}

// subjectPrefix is the first two tokens of subject ("ab.inbox"), a span
// name of bounded cardinality.
func subjectPrefix(subject string) string {
	if i := strings.IndexByte(subject, '.'); i >= 0 {
		if j := strings.IndexByte(subject[i+1:], '.'); j >= 0 {
			return subject[:i+1+j]
		}
	}
	return subject
}

// checkPublishSubject refuses subjects that are empty, contain wildcards,
// whitespace or empty tokens.
func checkPublishSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("empty subject: %w", ErrInvalidSubject)
	}
	for i, tok := range strings.Split(subject, ".") {
		if tok == "" {
			return fmt.Errorf("subject %q: token %d empty: %w", subject, i+1, ErrInvalidSubject)
		}
		if tok == "*" || tok == ">" {
			return fmt.Errorf("subject %q: wildcard %q in a publish subject: %w", subject, tok, ErrInvalidSubject)
		}
		if strings.ContainsAny(tok, " \t\r\n\f\v") {
			return fmt.Errorf("subject %q: whitespace in token %d: %w", subject, i+1, ErrInvalidSubject)
		}
	}
	return nil
}

// checkHeaderValue refuses control characters, which would break the NATS
// header block or smuggle headers.
func checkHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character %q at byte %d", c, i+1)
		}
	}
	return nil
}

// EventToMsg encodes ev in binary mode as a NATS message to subject.
func EventToMsg(subject string, ev event.Event) (*nats.Msg, error) {
	if ev.SpecVersion() != SpecVersion {
		return nil, fmt.Errorf("specversion %q: want %s: %w", ev.SpecVersion(), SpecVersion, ErrInvalidEvent)
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	msg := nats.NewMsg(subject)
	set := func(name, value string) error {
		if err := checkHeaderValue(value); err != nil {
			return fmt.Errorf("attribute %s: %s: %w", strings.TrimPrefix(name, HeaderPrefix), err, ErrInvalidEvent)
		}
		msg.Header[name] = []string{value}
		return nil
	}
	attrs := []struct{ name, value string }{
		{hSpecVersion, ev.SpecVersion()},
		{hID, ev.ID()},
		{hSource, ev.Source()},
		{hType, ev.Type()},
		{hSubject, ev.Subject()},
		{hDataSchema, ev.DataSchema()},
		{HeaderContentType, ev.DataContentType()},
	}
	if t := ev.Time(); !t.IsZero() {
		attrs = append(attrs, struct{ name, value string }{hTime, types.FormatTime(t)})
	}
	for _, a := range attrs {
		if a.value == "" {
			continue
		}
		if err := set(a.name, a.value); err != nil {
			return nil, err
		}
	}
	exts := ev.Extensions()
	names := make([]string, 0, len(exts))
	for name := range exts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := types.Format(exts[name])
		if err != nil {
			return nil, fmt.Errorf("extension %s: %w: %w", name, ErrInvalidEvent, err)
		}
		if err := set(HeaderPrefix+strings.ToLower(name), v); err != nil {
			return nil, err
		}
	}
	msg.Data = ev.Data()
	return msg, nil
}

// EventFromMsg decodes the binary-mode CloudEvent a JetStream message
// carries. See EventFromHeaders.
func EventFromMsg(msg jetstream.Msg) (event.Event, error) {
	return EventFromHeaders(msg.Headers(), msg.Data())
}

// EventFromHeaders decodes a binary-mode CloudEvent from NATS headers and
// body. The input is untrusted: header names are matched without regard to
// case, every attribute header must appear once with one value and no
// control characters,
// ce-specversion must be 1.0, ce-id, ce-source and ce-type must be present
// and well-formed, and extension names must be lower-case letters and
// digits. Errors wrap ErrInvalidEvent and name the offending header. Headers
// without the ce- prefix other than content-type are ignored.
func EventFromHeaders(h nats.Header, data []byte) (event.Event, error) {
	attrs := make(map[string]string, len(h))
	for key, values := range h {
		name := strings.ToLower(key)
		if name != HeaderContentType && !strings.HasPrefix(name, HeaderPrefix) {
			continue
		}
		if _, dup := attrs[name]; dup {
			return event.Event{}, fmt.Errorf("header %s: present more than once (names differ only in case): %w", name, ErrInvalidEvent)
		}
		if len(values) != 1 {
			return event.Event{}, fmt.Errorf("header %s: %d values, want 1: %w", name, len(values), ErrInvalidEvent)
		}
		if err := checkHeaderValue(values[0]); err != nil {
			return event.Event{}, fmt.Errorf("header %s: %s: %w", name, err, ErrInvalidEvent)
		}
		attrs[name] = values[0]
	}
	take := func(name string) (string, bool) {
		v, ok := attrs[name]
		delete(attrs, name)
		return v, ok
	}
	required := func(name string) (string, error) {
		v, ok := take(name)
		if !ok {
			return "", fmt.Errorf("header %s: missing: %w", name, ErrInvalidEvent)
		}
		if v == "" {
			return "", fmt.Errorf("header %s: empty: %w", name, ErrInvalidEvent)
		}
		return v, nil
	}

	sv, err := required(hSpecVersion)
	if err != nil {
		return event.Event{}, err
	}
	if sv != SpecVersion {
		return event.Event{}, fmt.Errorf("header %s: %q unsupported, want %s: %w", hSpecVersion, sv, SpecVersion, ErrInvalidEvent)
	}
	ev := event.New(SpecVersion)

	id, err := required(hID)
	if err != nil {
		return event.Event{}, err
	}
	ev.SetID(id)

	source, err := required(hSource)
	if err != nil {
		return event.Event{}, err
	}
	if types.ParseURIRef(source) == nil {
		return event.Event{}, fmt.Errorf("header %s: %q is not a URI reference: %w", hSource, source, ErrInvalidEvent)
	}
	ev.SetSource(source)

	typ, err := required(hType)
	if err != nil {
		return event.Event{}, err
	}
	ev.SetType(typ)

	if v, ok := take(hSubject); ok {
		if v == "" {
			return event.Event{}, fmt.Errorf("header %s: empty: %w", hSubject, ErrInvalidEvent)
		}
		ev.SetSubject(v)
	}
	if v, ok := take(hTime); ok {
		t, err := types.ParseTime(v)
		if err != nil {
			return event.Event{}, fmt.Errorf("header %s: %q is not an RFC 3339 time: %w", hTime, v, ErrInvalidEvent)
		}
		ev.SetTime(t)
	}
	if v, ok := take(hDataSchema); ok {
		if u := types.ParseURI(v); u == nil || !u.IsAbs() {
			return event.Event{}, fmt.Errorf("header %s: %q is not an absolute URI: %w", hDataSchema, v, ErrInvalidEvent)
		}
		ev.SetDataSchema(v)
	}
	if v, ok := take(HeaderContentType); ok {
		if v == "" {
			return event.Event{}, fmt.Errorf("header %s: empty: %w", HeaderContentType, ErrInvalidEvent)
		}
		ev.SetDataContentType(v)
	}
	if _, ok := take(HeaderPrefix + "datacontenttype"); ok {
		return event.Event{}, fmt.Errorf("header %sdatacontenttype: datacontenttype travels in %s: %w", HeaderPrefix, HeaderContentType, ErrInvalidEvent)
	}

	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, header := range names {
		name := strings.TrimPrefix(header, HeaderPrefix)
		if err := checkExtensionName(name); err != nil {
			return event.Event{}, fmt.Errorf("header %s: %w", header, err)
		}
		ev.SetExtension(name, attrs[header])
	}
	if len(data) > 0 {
		ev.DataEncoded = data
	}
	if err := ev.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return ev, nil
}

// checkExtensionName enforces the CloudEvents attribute naming rule: lower-case
// ASCII letters and digits, and no name the specification reserves.
func checkExtensionName(name string) error {
	if name == "" {
		return fmt.Errorf("empty attribute name: %w", ErrInvalidEvent)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("attribute name %q: byte %d is %q, want a-z or 0-9: %w", name, i+1, c, ErrInvalidEvent)
		}
	}
	if name == "data" {
		return fmt.Errorf("attribute name %q is reserved: %w", name, ErrInvalidEvent)
	}
	return nil
}
