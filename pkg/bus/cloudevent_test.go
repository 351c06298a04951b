package bus_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/pkg/bus"
)

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// newEvent returns a complete CloudEvent as the gateway would send it.
func newEvent(t testing.TB, id string) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("https://amtsbote.example/submission-api")
	ev.SetType("de.amtsbote.submission.submitted")
	ev.SetSubject("submission:" + destID)
	ev.SetTime(time.Date(2025, 11, 30, 12, 0, 0, 123456789, time.UTC))
	ev.SetDataSchema("https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json")
	ev.SetExtension(bus.ExtensionTraceparent, traceparent)
	ev.SetExtension("caseid", caseID)
	if err := ev.SetData("application/jose", []byte("eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a.b.c.d")); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestEventMsgRoundTrip(t *testing.T) {
	ev := newEvent(t, "e1")
	msg, err := bus.EventToMsg("ab.events."+caseID, ev)
	if err != nil {
		t.Fatal(err)
	}
	wantHeaders := map[string]string{
		"ce-specversion": "1.0",
		"ce-id":          "e1",
		"ce-source":      "https://amtsbote.example/submission-api",
		"ce-type":        "de.amtsbote.submission.submitted",
		"ce-subject":     "submission:" + destID,
		"ce-time":        "2025-11-30T12:00:00.123456789Z",
		"ce-dataschema":  "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json",
		"ce-traceparent": traceparent,
		"ce-caseid":      caseID,
		"content-type":   "application/jose",
	}
	for k, v := range wantHeaders {
		if got := msg.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if len(msg.Header) != len(wantHeaders) {
		t.Errorf("headers %v, want exactly %d", msg.Header, len(wantHeaders))
	}
	if !bytes.Equal(msg.Data, ev.Data()) {
		t.Errorf("data %q, want %q", msg.Data, ev.Data())
	}

	got, err := bus.EventFromHeaders(msg.Header, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	assertSameEvent(t, got, ev)
}

func assertSameEvent(t *testing.T, got, want event.Event) {
	t.Helper()
	if got.ID() != want.ID() || got.Source() != want.Source() || got.Type() != want.Type() ||
		got.Subject() != want.Subject() || !got.Time().Equal(want.Time()) ||
		got.DataSchema() != want.DataSchema() || got.DataContentType() != want.DataContentType() {
		t.Errorf("event attributes differ:\n got %s\nwant %s", got, want)
	}
	if got.Extensions()[bus.ExtensionTraceparent] != traceparent {
		t.Errorf("traceparent = %v, want %s", got.Extensions()[bus.ExtensionTraceparent], traceparent)
	}
	if got.Extensions()["caseid"] != want.Extensions()["caseid"] {
		t.Errorf("caseid = %v, want %v", got.Extensions()["caseid"], want.Extensions()["caseid"])
	}
	if !bytes.Equal(got.Data(), want.Data()) {
		t.Errorf("data %q, want %q", got.Data(), want.Data())
	}
}

func TestEventToMsgRejects(t *testing.T) {
	noID := newEvent(t, "x")
	noID.SetID("")
	ctl := newEvent(t, "x")
	ctl.SetExtension("note", "a\r\nce-id: smuggled")
	old := newEvent(t, "x")
	old.SetSpecVersion("0.3")
	for name, ev := range map[string]event.Event{"missing id": noID, "control character": ctl, "specversion 0.3": old} {
		t.Run(name, func(t *testing.T) {
			if _, err := bus.EventToMsg("ab.events.x", ev); !errors.Is(err, bus.ErrInvalidEvent) {
				t.Fatalf("error %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestEventFromHeadersMalformed(t *testing.T) {
	valid := func() nats.Header {
		return nats.Header{
			"ce-specversion": {"1.0"},
			"ce-id":          {"e1"},
			"ce-source":      {"/gateway"},
			"ce-type":        {"de.amtsbote.test"},
		}
	}
	tests := []struct {
		name    string
		edit    func(h nats.Header)
		wantErr string
	}{
		{"no headers at all", func(h nats.Header) { clear(h) }, "header ce-specversion: missing"},
		{"missing specversion", func(h nats.Header) { delete(h, "ce-specversion") }, "header ce-specversion: missing"},
		{"specversion 0.3", func(h nats.Header) { h["ce-specversion"] = []string{"0.3"} }, `header ce-specversion: "0.3" unsupported, want 1.0`},
		{"specversion garbage", func(h nats.Header) { h["ce-specversion"] = []string{"one"} }, `"one" unsupported`},
		{"missing id", func(h nats.Header) { delete(h, "ce-id") }, "header ce-id: missing"},
		{"empty id", func(h nats.Header) { h["ce-id"] = []string{""} }, "header ce-id: empty"},
		{"two ids", func(h nats.Header) { h["ce-id"] = []string{"a", "b"} }, "header ce-id: 2 values, want 1"},
		{"id in two cases", func(h nats.Header) { h["Ce-Id"] = []string{"b"} }, "header ce-id: present more than once"},
		{"missing source", func(h nats.Header) { delete(h, "ce-source") }, "header ce-source: missing"},
		{"bad source", func(h nats.Header) { h["ce-source"] = []string{"http://[::1"} }, `header ce-source: "http://[::1" is not a URI reference`},
		{"missing type", func(h nats.Header) { delete(h, "ce-type") }, "header ce-type: missing"},
		{"empty type", func(h nats.Header) { h["ce-type"] = []string{""} }, "header ce-type: empty"},
		{"bad time", func(h nats.Header) { h["ce-time"] = []string{"yesterday"} }, `header ce-time: "yesterday" is not an RFC 3339 time`},
		{"relative dataschema", func(h nats.Header) { h["ce-dataschema"] = []string{"schema.json"} }, `header ce-dataschema: "schema.json" is not an absolute URI`},
		{"empty subject", func(h nats.Header) { h["ce-subject"] = []string{""} }, "header ce-subject: empty"},
		{"datacontenttype header", func(h nats.Header) { h["ce-datacontenttype"] = []string{"text/plain"} }, "datacontenttype travels in content-type"},
		{"extension with underscore", func(h nats.Header) { h["ce-trace_parent"] = []string{"x"} }, `header ce-trace_parent: attribute name "trace_parent": byte 6 is '_'`},
		{"empty extension name", func(h nats.Header) { h["ce-"] = []string{"x"} }, "header ce-: empty attribute name"},
		{"reserved name", func(h nats.Header) { h["ce-data"] = []string{"x"} }, `attribute name "data" is reserved`},
		{"control character", func(h nats.Header) { h["ce-type"] = []string{"a\x00b"} }, `header ce-type: control character '\x00' at byte 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := valid()
			tt.edit(h)
			_, err := bus.EventFromHeaders(h, nil)
			if !errors.Is(err, bus.ErrInvalidEvent) {
				t.Fatalf("error %v, want ErrInvalidEvent", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}

	t.Run("header names in any case", func(t *testing.T) {
		h := nats.Header{"CE-SpecVersion": {"1.0"}, "Ce-Id": {"e1"}, "CE-SOURCE": {"/g"}, "ce-Type": {"t"}, "Content-Type": {"text/plain"}, "Ce-TraceParent": {traceparent}}
		ev, err := bus.EventFromHeaders(h, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if ev.ID() != "e1" || ev.DataContentType() != "text/plain" || ev.Extensions()["traceparent"] != traceparent {
			t.Errorf("decoded %s", ev)
		}
	})
	t.Run("other headers ignored", func(t *testing.T) {
		h := valid()
		h["Nats-Msg-Id"] = []string{"a", "b"}
		h[bus.HeaderDeadReason] = []string{"x"}
		if _, err := bus.EventFromHeaders(h, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzEventFromHeaders feeds raw NATS header blocks, as a peer could send
// them, to the decoder. Whatever it accepts must be a valid event that
// survives encoding and decoding unchanged.
func FuzzEventFromHeaders(f *testing.F) {
	f.Add([]byte("NATS/1.0\r\nce-specversion: 1.0\r\nce-id: e1\r\nce-source: /g\r\nce-type: t\r\n\r\n"), []byte(nil))
	f.Add([]byte("NATS/1.0\r\nce-specversion: 1.0\r\nce-id: e1\r\nce-source: https://a.example/x\r\nce-type: t\r\n"+
		"ce-time: 2025-11-30T12:00:00+01:00\r\nce-traceparent: "+traceparent+"\r\ncontent-type: application/jose\r\n\r\n"), []byte("a.b.c.d.e"))
	f.Add([]byte("NATS/1.0\r\nCE-SPECVERSION: 1.0\r\nce-specversion: 1.0\r\n\r\n"), []byte(nil))
	f.Add([]byte("NATS/1.0\r\nce-specversion: 0.3\r\nce-id: e1\r\nce-source: /g\r\nce-type: t\r\nce-schemaurl: x\r\n\r\n"), []byte("{}"))
	f.Add([]byte("NATS/1.0 503\r\n\r\n"), []byte(nil))
	f.Fuzz(func(t *testing.T, block, data []byte) {
		h, err := nats.DecodeHeadersMsg(block)
		if err != nil {
			return
		}
		ev, err := bus.EventFromHeaders(h, data)
		if err != nil {
			if !errors.Is(err, bus.ErrInvalidEvent) {
				t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
			}
			return
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
		msg, err := bus.EventToMsg("ab.events.x", ev)
		if err != nil {
			t.Fatalf("cannot encode an accepted event: %v", err)
		}
		again, err := bus.EventFromHeaders(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("cannot decode an encoded event: %v", err)
		}
		msg2, err := bus.EventToMsg("ab.events.x", again)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range msg.Header {
			if w := msg2.Header[k]; len(w) != 1 || w[0] != v[0] {
				t.Fatalf("header %s changed in a round trip: %q then %q", k, v, w)
			}
		}
		if len(msg.Header) != len(msg2.Header) || !bytes.Equal(msg.Data, msg2.Data) {
			t.Fatalf("round trip changed the message: %v %q then %v %q", msg.Header, msg.Data, msg2.Header, msg2.Data)
		}
	})
}
