// Package sinktest is the conformance suite every sink.Sink passes: it
// delivers, redelivers, delivers concurrently from two sink instances on
// one backend, fails half-way and retries, and checks after each step that
// the backend holds exactly one complete copy of every submission.
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// Delivered is a submission as a backend holds it.
type Delivered struct {
	SubmissionID      string
	CaseID            string
	DestinationID     string
	ServiceIdentifier string
	Metadata          []byte
	Data              []byte
	DataMimeType      string
	// Attachments in the order they were delivered.
	Attachments []Attachment
}

// Attachment is an attachment as a backend holds it.
type Attachment struct {
	ID       string
	Filename string
	MimeType string
	Content  []byte
}

// Backend is one fresh, empty backend of a sink.
type Backend struct {
	// Open returns a new sink instance on the backend, as another process
	// would open one. The suite closes it.
	Open func(t *testing.T) sink.Sink
	// Delivered returns what the backend holds, in any order.
	Delivered func(t *testing.T) []Delivered
}

// Run runs the suite; newBackend is called once per subtest.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"DeliverOne", testDeliverOne},
		{"DeliverAgain", testDeliverAgain},
		{"Attachments", testAttachments},
		{"ConcurrentDifferent", testConcurrentDifferent},
		{"ConcurrentSame", testConcurrentSame},
		{"SourceFailsThenRetry", testSourceFailsThenRetry},
		{"CancelledThenRetry", testCancelledThenRetry},
		{"HostileFilenames", testHostileFilenames},
		{"Invalid", testInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBackend(t))
		})
	}
}

// open returns a sink on b, closed when the test ends.
func open(t *testing.T, b Backend) sink.Sink {
	t.Helper()
	s := b.Open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s sink: %v", s.Kind(), err)
		}
	})
	return s
}

// Content is an attachment's content with a count of its opens.
type Content struct {
	Bytes []byte
	// FailAfter > 0 makes reads fail with Err after that many bytes.
	FailAfter int
	Err       error
	// OnRead, if set, runs before every read with the bytes read so far.
	OnRead func(n int)

	mu    sync.Mutex
	opens int
}

// Opens returns how often the content was opened.
func (c *Content) Opens() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens
}

// Attachment returns an attachment reading c.
func (c *Content) Attachment(id, filename, mimeType string) sink.Attachment {
	return sink.Attachment{
		ID: id, Filename: filename, MimeType: mimeType, Size: int64(len(c.Bytes)),
		Open: func() (io.ReadCloser, error) {
			c.mu.Lock()
			c.opens++
			c.mu.Unlock()
			return io.NopCloser(&contentReader{c: c}), nil
		},
	}
}

type contentReader struct {
	c   *Content
	off int
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.c.OnRead != nil {
		r.c.OnRead(r.off)
	}
	if r.c.FailAfter > 0 && r.off >= r.c.FailAfter {
		return 0, r.c.Err
	}
	if r.off >= len(r.c.Bytes) {
		return 0, io.EOF
	}
	end := len(r.c.Bytes)
	if r.c.FailAfter > 0 && r.c.FailAfter < end {
		end = r.c.FailAfter
	}
	// Short reads, as a decrypting source gives them.
	if end-r.off > 50_000 {
		end = r.off + 50_000
	}
	n := copy(p, r.c.Bytes[r.off:end])
	r.off += n
	return n, nil
}

// Random returns n deterministic pseudo-random bytes.
func Random(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = rng.Read(b) // ChaCha8.Read never fails
	return b
}

// NewDelivery returns a delivery with JSON data and no attachments.
func NewDelivery() sink.Delivery {
	id := uuid.NewString()
	return sink.Delivery{
		SubmissionID:      id,
		CaseID:            uuid.NewString(),
		DestinationID:     "2f0b0e1c-8d0a-4b9e-9c77-5f1b3d1e2a01",
		ServiceIdentifier: "urn:de:fim:leika:leistung:99010003001006",
		Metadata:          []byte(`{"$schema":"https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json","contentStructure":{"attachments":[]},"submission":"` + id + `"}`),
		Data:              []byte(`{"antrag":{"name":"Erika Mustermann","straße":"Hauptstraße 1"}}`),
		DataMimeType:      sink.MimeJSON,
	}
}

// Find returns the copies of submission id among got.
func Find(got []Delivered, id string) []Delivered {
	var out []Delivered
	for _, d := range got {
		if d.SubmissionID == id {
			out = append(out, d)
		}
	}
	return out
}

// Check fails the test unless got holds exactly one copy of want, equal to
// it, with the attachment contents of contents (by attachment id).
func Check(t *testing.T, got []Delivered, want sink.Delivery, contents map[string][]byte) {
	t.Helper()
	id := strings.ToLower(want.SubmissionID)
	copies := Find(got, id)
	if len(copies) != 1 {
		t.Fatalf("backend holds %d copies of %s, want 1", len(copies), id)
	}
	if err := equal(copies[0], want, contents); err != nil {
		t.Fatalf("submission %s: %v", id, err)
	}
}

func equal(got Delivered, want sink.Delivery, contents map[string][]byte) error {
	switch {
	case got.CaseID != strings.ToLower(want.CaseID):
		return fmt.Errorf("case id %q, want %q", got.CaseID, strings.ToLower(want.CaseID))
	case got.DestinationID != strings.ToLower(want.DestinationID):
		return fmt.Errorf("destination id %q, want %q", got.DestinationID, want.DestinationID)
	case got.ServiceIdentifier != want.ServiceIdentifier:
		return fmt.Errorf("service %q, want %q", got.ServiceIdentifier, want.ServiceIdentifier)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Errorf("data %q, want %q", got.Data, want.Data)
	case got.DataMimeType != want.DataMimeType:
		return fmt.Errorf("data media type %q, want %q", got.DataMimeType, want.DataMimeType)
	case len(got.Attachments) != len(want.Attachments):
		return fmt.Errorf("%d attachments, want %d", len(got.Attachments), len(want.Attachments))
	}
	var gm, wm any
	if err := json.Unmarshal(got.Metadata, &gm); err != nil {
		return fmt.Errorf("metadata %q: %v", got.Metadata, err)
	}
	if err := json.Unmarshal(want.Metadata, &wm); err != nil {
		return fmt.Errorf("wanted metadata: %v", err)
	}
	if !reflect.DeepEqual(gm, wm) {
		return fmt.Errorf("metadata %s, want %s", got.Metadata, want.Metadata)
	}
	names := sink.Filenames(want.Attachments)
	for i, a := range got.Attachments {
		w := want.Attachments[i]
		switch {
		case a.ID != strings.ToLower(w.ID):
			return fmt.Errorf("attachment %d: id %q, want %q", i, a.ID, w.ID)
		case a.Filename != names[i]:
			return fmt.Errorf("attachment %d: filename %q, want %q", i, a.Filename, names[i])
		case a.MimeType != w.MimeType:
			return fmt.Errorf("attachment %d: media type %q, want %q", i, a.MimeType, w.MimeType)
		case !bytes.Equal(a.Content, contents[w.ID]):
			return fmt.Errorf("attachment %d: %d bytes differ from the %d sent", i, len(a.Content), len(contents[w.ID]))
		}
	}
	return nil
}

func testDeliverOne(t *testing.T, b Backend) {
	s := open(t, b)
	if s.Kind() == "" {
		t.Error("Kind is empty")
	}
	noData := NewDelivery()
	noData.Data, noData.DataMimeType = nil, ""
	xml := NewDelivery()
	xml.Data, xml.DataMimeType = []byte(`<?xml version="1.0" encoding="UTF-8"?><antrag><name>Erika Mustermann</name></antrag>`), sink.MimeXML
	latin1 := NewDelivery()
	latin1.Data, latin1.DataMimeType = []byte("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><antrag><name>J\xfcrgen Gro\xdf</name></antrag>"), sink.MimeXML
	upper := NewDelivery()
	upper.SubmissionID, upper.CaseID = strings.ToUpper(upper.SubmissionID), strings.ToUpper(upper.CaseID)
	cases := []struct {
		name string
		d    sink.Delivery
	}{
		{"json", NewDelivery()},
		{"xml", xml},
		{"no data", noData},
		{"latin-1 xml", latin1},
		{"upper-case ids", upper},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Deliver(context.Background(), tc.d); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			Check(t, b.Delivered(t), tc.d, nil)
		})
	}
	if got := len(b.Delivered(t)); got != len(cases) {
		t.Fatalf("backend holds %d submissions, want %d", got, len(cases))
	}
}

func testDeliverAgain(t *testing.T, b Backend) {
	s, other := open(t, b), open(t, b)
	d := NewDelivery()
	c := &Content{Bytes: []byte("%PDF-1.7 Bauplan")}
	d.Attachments = []sink.Attachment{c.Attachment(uuid.NewString(), "bauplan.pdf", "application/pdf")}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	changed := d
	changed.Metadata = []byte(`{"changed":true}`)
	changed.Data = []byte(`{"changed":true}`)
	for i, again := range []sink.Sink{s, other, s} {
		if err := again.Deliver(context.Background(), changed); err != nil {
			t.Fatalf("deliver again (%d): %v", i, err)
		}
	}
	got := b.Delivered(t)
	if len(got) != 1 {
		t.Fatalf("backend holds %d submissions, want 1", len(got))
	}
	Check(t, got, d, map[string][]byte{d.Attachments[0].ID: c.Bytes})
	if n := c.Opens(); n > 4 {
		t.Errorf("attachment opened %d times in 4 deliveries", n)
	}
}

func testAttachments(t *testing.T, b Backend) {
	s := open(t, b)
	d := NewDelivery()
	parts := []struct {
		name, mime string
		content    []byte
		size       int64
	}{
		{"leer.txt", "text/plain", []byte{}, 0},
		{"Lageplan Müller.pdf", "application/pdf", Random(1, 3<<20+17), -1},
		{"foto.jpg", "image/jpeg", Random(2, 70_001), 70_001},
		{"nullen.bin", "application/octet-stream", make([]byte, 1<<20), 1 << 20},
	}
	contents := map[string][]byte{}
	var cs []*Content
	for _, p := range parts {
		c := &Content{Bytes: p.content}
		a := c.Attachment(uuid.NewString(), p.name, p.mime)
		a.Size = p.size
		d.Attachments = append(d.Attachments, a)
		contents[a.ID] = p.content
		cs = append(cs, c)
	}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	Check(t, b.Delivered(t), d, contents)
	for i, c := range cs {
		if n := c.Opens(); n != 1 {
			t.Errorf("attachment %d opened %d times, want once", i, n)
		}
	}
}

func testConcurrentDifferent(t *testing.T, b Backend) {
	sinks := []sink.Sink{open(t, b), open(t, b)}
	const n = 12
	ds := make([]sink.Delivery, n)
	contents := map[string][]byte{}
	for i := range ds {
		ds[i] = NewDelivery()
		content := Random(uint64(i+10), 100_000+i)
		c := &Content{Bytes: content}
		a := c.Attachment(uuid.NewString(), fmt.Sprintf("anlage-%d.bin", i), "application/octet-stream")
		ds[i].Attachments = []sink.Attachment{a}
		contents[a.ID] = content
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ds {
		wg.Go(func() { errs[i] = sinks[i%2].Deliver(context.Background(), ds[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("deliver %d: %v", i, err)
		}
	}
	got := b.Delivered(t)
	if len(got) != n {
		t.Fatalf("backend holds %d submissions, want %d", len(got), n)
	}
	for _, d := range ds {
		Check(t, got, d, contents)
	}
}

func testConcurrentSame(t *testing.T, b Backend) {
	sinks := []sink.Sink{open(t, b), open(t, b)}
	d := NewDelivery()
	content := Random(3, 600_000)
	c := &Content{Bytes: content}
	d.Attachments = []sink.Attachment{c.Attachment(uuid.NewString(), "antrag.pdf", "application/pdf")}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = sinks[i%2].Deliver(context.Background(), d) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("deliver %d: %v", i, err)
		}
	}
	got := b.Delivered(t)
	if len(got) != 1 {
		t.Fatalf("backend holds %d submissions, want 1", len(got))
	}
	Check(t, got, d, map[string][]byte{d.Attachments[0].ID: content})
}

var errSource = errors.New("attachment source broke")

func testSourceFailsThenRetry(t *testing.T, b Backend) {
	cases := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"transient", errSource, false},
		{"permanent", fmt.Errorf("%w: %w", sink.ErrPermanent, errSource), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, b)
			d := NewDelivery()
			content := Random(4, 2<<20)
			first := &Content{Bytes: content}
			broken := &Content{Bytes: content, FailAfter: 1 << 20, Err: tc.err}
			id := uuid.NewString()
			d.Attachments = []sink.Attachment{
				first.Attachment(uuid.NewString(), "erste.pdf", "application/pdf"),
				broken.Attachment(id, "zweite.pdf", "application/pdf"),
			}
			err := s.Deliver(context.Background(), d)
			if !errors.Is(err, errSource) {
				t.Fatalf("deliver with a broken source: %v, want an error wrapping the source's", err)
			}
			if errors.Is(err, sink.ErrPermanent) != tc.permanent || errors.Is(err, sink.ErrTransient) == tc.permanent {
				t.Fatalf("deliver with a broken source: %v, permanent %v, want %v", err, errors.Is(err, sink.ErrPermanent), tc.permanent)
			}
			if got := Find(b.Delivered(t), d.SubmissionID); len(got) != 0 {
				t.Fatalf("a failed delivery left %d copies", len(got))
			}
			fixed := &Content{Bytes: content}
			d.Attachments[1] = fixed.Attachment(id, "zweite.pdf", "application/pdf")
			if err := s.Deliver(context.Background(), d); err != nil {
				t.Fatalf("retry: %v", err)
			}
			Check(t, b.Delivered(t), d, map[string][]byte{d.Attachments[0].ID: content, id: content})
		})
	}
	t.Run("open fails", func(t *testing.T) {
		s := open(t, b)
		d := NewDelivery()
		d.Attachments = []sink.Attachment{{
			ID: uuid.NewString(), Filename: "a.pdf", MimeType: "application/pdf", Size: -1,
			Open: func() (io.ReadCloser, error) { return nil, errSource },
		}}
		err := s.Deliver(context.Background(), d)
		if !errors.Is(err, errSource) || !errors.Is(err, sink.ErrTransient) {
			t.Fatalf("deliver with a source that cannot open: %v, want a transient error wrapping the source's", err)
		}
		if got := Find(b.Delivered(t), d.SubmissionID); len(got) != 0 {
			t.Fatalf("a failed delivery left %d copies", len(got))
		}
	})
}

func testCancelledThenRetry(t *testing.T, b Backend) {
	s := open(t, b)
	d := NewDelivery()
	content := Random(5, 2<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Content{Bytes: content, OnRead: func(n int) {
		if n >= 1<<20 {
			cancel()
		}
	}}
	d.Attachments = []sink.Attachment{c.Attachment(uuid.NewString(), "antrag.pdf", "application/pdf")}
	err := s.Deliver(ctx, d)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, sink.ErrTransient) {
		t.Fatalf("deliver cancelled half-way: %v, want a transient error wrapping context.Canceled", err)
	}
	if got := Find(b.Delivered(t), d.SubmissionID); len(got) != 0 {
		t.Fatalf("a cancelled delivery left %d copies", len(got))
	}
	c.OnRead = nil
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("retry: %v", err)
	}
	Check(t, b.Delivered(t), d, map[string][]byte{d.Attachments[0].ID: content})
}

// HostileFilenames are filenames a sender may choose to break out of a
// folder, hide, collide or confuse.
var HostileFilenames = []string{
	"../../../etc/passwd",
	"/etc/shadow",
	`..\..\windows\system32\config`,
	"..",
	".",
	"",
	"   ",
	".bashrc",
	"-rf",
	"a\x00b.pdf",
	"zeile\nzwei.pdf",
	"rechnung\u202Efdp.exe",
	"\xff\xfe.pdf",
	"CON",
	"nul.txt",
	"a:b*c?.pdf",
	strings.Repeat("ä", 300) + ".pdf",
	strings.Repeat("x", 400),
	"bauplan.pdf",
	"Bauplan.PDF",
	"bauplan.pdf",
	"bauplan-2.pdf",
	"sub/../bauplan.pdf",
}

// SafeFilename reports why name is not a single, harmless file name, or
// "" when it is one.
func SafeFilename(name string) string {
	switch {
	case name == "" || name == "." || name == "..":
		return "empty or a dot name"
	case len(name) > 255:
		return "longer than 255 bytes"
	case !utf8.ValidString(name):
		return "not UTF-8"
	case strings.ContainsAny(name, `/\`):
		return "a path"
	case strings.HasPrefix(name, ".") || strings.HasPrefix(name, "-"):
		return "hidden or an option"
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0:
		return "a control or format character"
	}
	return ""
}

func testHostileFilenames(t *testing.T, b Backend) {
	s := open(t, b)
	d := NewDelivery()
	contents := map[string][]byte{}
	for i, name := range HostileFilenames {
		content := []byte(fmt.Sprintf("Anlage %d: %q", i, name))
		a := (&Content{Bytes: content}).Attachment(uuid.NewString(), name, "application/octet-stream")
		d.Attachments = append(d.Attachments, a)
		contents[a.ID] = content
	}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	got := b.Delivered(t)
	Check(t, got, d, contents)
	seen := map[string]bool{}
	for _, a := range Find(got, d.SubmissionID)[0].Attachments {
		if why := SafeFilename(a.Filename); why != "" {
			t.Errorf("stored filename %q is %s", a.Filename, why)
		}
		if seen[strings.ToLower(a.Filename)] {
			t.Errorf("stored filename %q twice", a.Filename)
		}
		seen[strings.ToLower(a.Filename)] = true
	}
}

func testInvalid(t *testing.T, b Backend) {
	s := open(t, b)
	att := func(id string) sink.Attachment {
		return (&Content{Bytes: []byte("x")}).Attachment(id, "x.txt", "text/plain")
	}
	dup := uuid.NewString()
	cases := []struct {
		name   string
		change func(d *sink.Delivery)
	}{
		{"submission id path", func(d *sink.Delivery) { d.SubmissionID = "../../../../tmp/x" }},
		{"submission id empty", func(d *sink.Delivery) { d.SubmissionID = "" }},
		{"submission id urn", func(d *sink.Delivery) { d.SubmissionID = "urn:uuid:" + uuid.NewString() }},
		{"case id", func(d *sink.Delivery) { d.CaseID = "case-1" }},
		{"destination id", func(d *sink.Delivery) { d.DestinationID = "" }},
		{"service empty", func(d *sink.Delivery) { d.ServiceIdentifier = "" }},
		{"service control", func(d *sink.Delivery) { d.ServiceIdentifier = "urn:x\n" }},
		{"metadata array", func(d *sink.Delivery) { d.Metadata = []byte(`[]`) }},
		{"metadata broken", func(d *sink.Delivery) { d.Metadata = []byte(`{"a":`) }},
		{"metadata nil", func(d *sink.Delivery) { d.Metadata = nil }},
		{"metadata not utf-8", func(d *sink.Delivery) { d.Metadata = []byte("{\"name\":\"J\xfcrgen\"}") }},
		{"data type", func(d *sink.Delivery) { d.DataMimeType = "text/html" }},
		{"data type without data", func(d *sink.Delivery) { d.Data = nil }},
		{"data without type", func(d *sink.Delivery) { d.DataMimeType = "" }},
		{"attachment id", func(d *sink.Delivery) { d.Attachments = []sink.Attachment{att("../x")} }},
		{"attachment twice", func(d *sink.Delivery) { d.Attachments = []sink.Attachment{att(dup), att(strings.ToUpper(dup))} }},
		{"attachment media type", func(d *sink.Delivery) {
			a := att(uuid.NewString())
			a.MimeType = ""
			d.Attachments = []sink.Attachment{a}
		}},
		{"attachment without content", func(d *sink.Delivery) {
			a := att(uuid.NewString())
			a.Open = nil
			d.Attachments = []sink.Attachment{a}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDelivery()
			tc.change(&d)
			err := s.Deliver(context.Background(), d)
			if !errors.Is(err, sink.ErrInvalid) || !errors.Is(err, sink.ErrPermanent) || errors.Is(err, sink.ErrTransient) {
				t.Fatalf("deliver: %v, want a permanent ErrInvalid", err)
			}
		})
	}
	if got := b.Delivered(t); len(got) != 0 {
		t.Fatalf("invalid deliveries left %d submissions", len(got))
	}
}
