package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// maxHeapGrowth bounds how much the gateway's heap may grow while it
// carries a 64 MiB attachment either way: it streams, it never holds the
// object. maxDevHeapGrowth is the bound for dev, whose heap also holds the
// embedded NATS server's message block caches of the object's chunks.
const (
	maxHeapGrowth    = 32 << 20
	maxDevHeapGrowth = 48 << 20
)

// TestE2E runs the whole system the way users run it: `amtsbote dev` as a
// process of its own on SQLite and on PostgreSQL, beside it on PostgreSQL
// a `serve --target=gateway` process, and then `serve` roles started and
// stopped separately against one NATS and PostgreSQL (through run(), so
// that the race detector watches them). Senders and receivers are the Go
// SDK; every response they get is validated against FIT-Connect's
// Submission API.
func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole system")
	}
	bin := buildBinary(t)
	t.Run("sqlite", func(t *testing.T) {
		s := startE2E(t, bin, "")
		s.run(t)
	})
	t.Run("postgres", func(t *testing.T) {
		dbURL := freshSchema(t)
		s := startE2E(t, bin, dbURL)
		s.run(t)
		s.dev.stop(t)
		t.Run("router stopped while ingress fills", func(t *testing.T) {
			routerStopped(t, s.dir, dbURL, s.ct)
		})
	})
}

// e2e is one data dir with `amtsbote dev` running on it.
type e2e struct {
	bin   string
	dir   string
	dbURL string // empty for SQLite
	extra []string
	dev   *child
	ct    *contract
}

func startE2E(t *testing.T, bin, dbURL string) *e2e {
	t.Helper()
	s := &e2e{bin: bin, dir: t.TempDir(), dbURL: dbURL, ct: newContract(t)}
	if dbURL != "" {
		s.extra = []string{"--database-url", dbURL}
	}
	s.dev = startChild(t, bin, s.dir, s.extra...)
	return s
}

// run runs the scenarios that share one dev process; the restart comes last.
func (s *e2e) run(t *testing.T) {
	t.Run("lifecycle with a 64 MiB attachment", s.lifecycle)
	t.Run("retried create and submit", s.retried)
	t.Run("bad input", s.badInput)
	t.Run("restart between submit and pickup", s.restart)
}

// lifecycle carries a submission with a 64 MiB attachment from the SDK's
// sender to its receiver and back to the sender's verified status, and
// watches the heap of the process the requests go to. On PostgreSQL that
// is a gateway process of its own, `serve --target=gateway` beside dev:
// its heap in use, garbage included, must stay far below the attachment.
// On SQLite it is dev, whose heap also holds the embedded NATS server
// with its message block caches and their garbage; there the bound holds
// for the live heap the collector finds.
func (s *e2e) lifecycle(t *testing.T) {
	defer s.ct.report(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, front, gatewayOnly := s.dev.demo, "dev (gateway, router, ledger and NATS server)", false
	if s.dbURL != "" {
		port := strconv.Itoa(freePort(t))
		d.BaseURL, front, gatewayOnly = "http://127.0.0.1:"+port, "gateway", true
		startProcess(t, s.bin, "amtsbote serving", "serve", "--target=gateway", "--listen", "127.0.0.1:"+port,
			"--public-url", d.BaseURL, "--nats-url", d.NATSURL, "--database-url", s.dbURL,
			"--signing-key", filepath.Join(s.dir, "keys", "amtsbote.signing.jwk.json"), "--log-level", "warn")
	}
	checkHeap := func(what string, grew heapStats) {
		t.Helper()
		t.Logf("%s heap while %s a 64 MiB attachment: in use +%.1f MiB, live +%.1f MiB",
			front, what, mib(grew.Inuse), mib(grew.Live))
		measure, v, bound := "live heap", grew.Live, float64(maxDevHeapGrowth)
		if gatewayOnly {
			measure, v, bound = "heap in use", grew.Inuse, maxHeapGrowth
		}
		if v > bound {
			t.Errorf("%s %s grew by %.1f MiB while %s a 64 MiB attachment; want less than %d MiB",
				front, measure, mib(v), what, int(bound)>>20)
		}
	}
	dest := d.Destinations[0]
	ring, sigKey := destinationKeys(t, dest)
	sender := newActor(t, d, "sender", s.ct)
	receiver := newActor(t, d, "receiver", s.ct).Receiver()

	big := randomBytes(64<<20, 1)
	form := append([]byte("%PDF-1.7\n"), randomBytes(200<<10, 2)...)
	data := []byte(`{"gewerbe":{"art":"Anmeldung","betrieb":"Bäckerei Beispiel","beginn":"2026-01-15"}}`)
	metrics := d.BaseURL + "/metrics"
	watch := watchHeap(t, metrics)
	receipt, err := sender.Sender().Submit(ctx, client.Submission{
		DestinationID: dest.DestinationID,
		ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Gewerbeanmeldung"},
		Region:        dest.Region,
		Data:          data,
		Attachments: []client.Attachment{
			{Filename: "antrag.pdf", MimeType: "application/pdf", Purpose: client.PurposeForm, Bytes: form},
			{Filename: "grundriss.tiff", MimeType: "image/tiff", Description: "Grundriss der Betriebsräume", Bytes: big},
		},
	})
	grew := watch.stop(t)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	checkHeap("receiving", grew)

	waitListed(t, receiver, dest.DestinationID, receipt.SubmissionID)
	watch = watchHeap(t, metrics)
	rec := fetch(t, receiver, receipt.SubmissionID, ring)
	grew = watch.stop(t)
	defer rec.Close()
	checkHeap("serving", grew)
	// Fetched, it stays on the pickup list until it is answered.
	if l := listed(t, receiver, dest.DestinationID, receipt.SubmissionID); l != 1 {
		t.Errorf("fetched submission listed %d times, want once", l)
	}

	if !bytes.Equal(rec.Data, data) || rec.DataMimeType != "application/json" {
		t.Errorf("data = %q (%s), want %q (application/json)", rec.Data, rec.DataMimeType, data)
	}
	if rec.CaseID != receipt.CaseID || rec.DestinationID != dest.DestinationID || rec.ServiceType.Identifier != dest.Services[0] {
		t.Errorf("received case %s, destination %s, service %s; want %s, %s, %s",
			rec.CaseID, rec.DestinationID, rec.ServiceType.Identifier, receipt.CaseID, dest.DestinationID, dest.Services[0])
	}
	want := map[string]struct {
		name  string
		bytes []byte
	}{
		receipt.AttachmentIDs[0]: {"antrag.pdf", form},
		receipt.AttachmentIDs[1]: {"grundriss.tiff", big},
	}
	if len(rec.Attachments) != len(want) {
		t.Fatalf("received %d attachments, want %d", len(rec.Attachments), len(want))
	}
	for _, a := range rec.Attachments {
		w, ok := want[a.ID]
		if !ok {
			t.Errorf("unexpected attachment %s", a.ID)
			continue
		}
		got, err := a.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if a.Filename != w.name || a.Size != int64(len(w.bytes)) || !bytes.Equal(got, w.bytes) {
			t.Errorf("attachment %s: %s, %d bytes, equal %v; want %s, %d bytes", a.ID, a.Filename, a.Size, bytes.Equal(got, w.bytes), w.name, len(w.bytes))
		}
	}
	if err := receiver.Accept(ctx, rec, sigKey); err != nil {
		t.Fatalf("accept: %v", err)
	}
	st := waitState(t, sender.Sender(), receipt, client.StateAccepted)
	if st.AuthenticationTags == nil || !st.AuthenticationTags.Equal(receipt.AuthenticationTags) {
		t.Errorf("recorded tags %+v, sent %+v", st.AuthenticationTags, receipt.AuthenticationTags)
	}
	// The sender's event log is EVENTS; the pickup list is the ledger's
	// projection, which may follow a moment later.
	eventually(t, time.Minute, func() error {
		if l := listed(t, receiver, dest.DestinationID, receipt.SubmissionID); l != 0 {
			return fmt.Errorf("accepted submission still listed %d times", l)
		}
		return nil
	})
}

func (s *e2e) retried(t *testing.T) {
	defer s.ct.report(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := s.dev.demo
	dest := d.Destinations[1]
	ring, sigKey := destinationKeys(t, dest)
	rp := &replay{next: s.ct}
	sender := newActor(t, d, "sender", rp)
	receiver := newActor(t, d, "receiver", s.ct).Receiver()

	data := []byte(`{"fahrerlaubnis":{"klasse":"B","antragsart":"Ersterteilung"}}`)
	receipt, err := sender.Sender().Submit(ctx, client.Submission{
		DestinationID:  dest.DestinationID,
		ServiceType:    client.ServiceType{Identifier: dest.Services[0], Name: "Fahrerlaubnis"},
		Data:           data,
		Attachments:    []client.Attachment{{Filename: "passbild.jpg", MimeType: "image/jpeg", Bytes: randomBytes(64<<10, 3)}},
		IdempotencyKey: uuid.NewString(),
	})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	rp.check(t, "create", "submit")

	waitListed(t, receiver, dest.DestinationID, receipt.SubmissionID)
	rec := fetch(t, receiver, receipt.SubmissionID, ring)
	defer rec.Close()
	if !bytes.Equal(rec.Data, data) {
		t.Errorf("data = %q, want %q", rec.Data, data)
	}
	if err := receiver.Accept(ctx, rec, sigKey); err != nil {
		t.Fatalf("accept: %v", err)
	}
	st := waitState(t, sender.Sender(), receipt, client.StateAccepted)
	counts := map[string]int{}
	for _, ev := range st.Events {
		counts[ev.Type]++
	}
	for _, ev := range []string{set.CreateSubmission, set.SubmitSubmission, set.AcceptSubmission} {
		if counts[ev] != 1 {
			t.Errorf("event log holds %d %s events, want 1", counts[ev], ev)
		}
	}
	js := jetStream(t, d.NATSURL)
	waitIngressEmpty(t, js)
	if n := inboxCopies(t, js, dest.DestinationID)[receipt.SubmissionID]; n != 1 {
		t.Errorf("INBOX holds %d copies of the submission, want 1", n)
	}
}

// badInput sends requests the API refuses, so that its problem answers
// pass the contract check too, and checks their statuses.
func (s *e2e) badInput(t *testing.T) {
	defer s.ct.report(t)
	d := s.dev.demo
	dest := d.Destinations[0]
	sender, receiver := token(t, d, "sender"), token(t, d, "receiver")
	hc := &http.Client{Transport: s.ct, Timeout: time.Minute}
	do := func(method, path, bearer, ctype, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, d.BaseURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	create := func(destinationID, service string, attachments ...string) string {
		if attachments == nil {
			attachments = []string{}
		}
		return fmt.Sprintf(`{"destinationId":%q,"announcedAttachments":%s,"serviceType":{"name":"Gewerbe","identifier":%q}}`,
			destinationID, toJSON(t, attachments), service)
	}
	code, body := do(http.MethodPost, "/v1/submissions", sender, "application/json", create(dest.DestinationID, dest.Services[0], uuid.NewString()))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct{ SubmissionID, CaseID string }
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	sid := created.SubmissionID

	tests := []struct {
		name                 string
		method, path, bearer string
		ctype, body          string
		status               int
	}{
		{"unknown destination", http.MethodPost, "/v1/submissions", sender, "application/json",
			create(uuid.NewString(), dest.Services[0]), http.StatusNotFound},
		{"service not offered", http.MethodPost, "/v1/submissions", sender, "application/json",
			create(dest.DestinationID, "urn:de:fim:leika:leistung:99999999999999"), http.StatusUnprocessableEntity},
		{"create without a token", http.MethodPost, "/v1/submissions", "", "application/json",
			create(dest.DestinationID, dest.Services[0]), http.StatusUnauthorized},
		{"attachment as JSON", http.MethodPut, "/v1/submissions/" + sid + "/attachments/" + uuid.NewString(), sender, "application/json",
			`"x"`, http.StatusUnsupportedMediaType},
		{"attachment not announced", http.MethodPut, "/v1/submissions/" + sid + "/attachments/" + uuid.NewString(), sender, "application/jose",
			"a.b.c.d.e", http.StatusUnprocessableEntity},
		{"metadata not a JWE", http.MethodPut, "/v1/submissions/" + sid, sender, "application/json",
			`{"encryptedMetadata":"not-a-jwe"}`, http.StatusBadRequest},
		{"submit unknown submission", http.MethodPut, "/v1/submissions/" + uuid.NewString(), sender, "application/json",
			`{"encryptedMetadata":"a.b.c.d.e"}`, http.StatusNotFound},
		{"sender lists pickups", http.MethodGet, "/v1/submissions?destinationId=" + dest.DestinationID, sender, "", "", http.StatusForbidden},
		{"receiver fetches an incomplete submission", http.MethodGet, "/v1/submissions/" + sid, receiver, "", "", http.StatusNotFound},
		{"event without a signature", http.MethodPost, "/v1/cases/" + created.CaseID + "/events", receiver, "application/jose",
			"eyJhbGciOiJub25lIn0.e30.", http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(tt.method, tt.path, tt.bearer, tt.ctype, tt.body)
			if code != tt.status {
				t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, code, body, tt.status)
			}
		})
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *e2e) restart(t *testing.T) {
	defer s.ct.report(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := s.dev.demo
	dest := d.Destinations[2]
	sender := newActor(t, d, "sender", s.ct)
	sent := map[string][]byte{}
	var receipts []client.Receipt
	for i := range 3 {
		data := fmt.Appendf(nil, `{"gaststaette":{"name":"Zum Anker %d"}}`, i)
		sub := client.Submission{
			DestinationID: dest.DestinationID,
			ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Gewerbe"},
			Data:          data,
		}
		if i == 0 {
			sub.Attachments = []client.Attachment{{Filename: "lageplan.pdf", MimeType: "application/pdf", Bytes: randomBytes(1<<20, 4)}}
		}
		r, err := sender.Sender().Submit(ctx, sub)
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		sent[r.SubmissionID] = data
		receipts = append(receipts, r)
	}

	s.dev.stop(t)
	s.dev = startChild(t, s.bin, s.dir, s.extra...)
	d = s.dev.demo
	sender = newActor(t, d, "sender", s.ct)
	receiver := newActor(t, d, "receiver", s.ct).Receiver()
	ring, sigKey := destinationKeys(t, dest)

	for _, r := range receipts {
		waitListed(t, receiver, dest.DestinationID, r.SubmissionID)
	}
	for _, r := range receipts {
		rec := fetch(t, receiver, r.SubmissionID, ring)
		if !bytes.Equal(rec.Data, sent[r.SubmissionID]) {
			t.Errorf("%s: data = %q, want %q", r.SubmissionID, rec.Data, sent[r.SubmissionID])
		}
		if len(rec.Attachments) != len(r.AttachmentIDs) {
			t.Errorf("%s: %d attachments after the restart, want %d", r.SubmissionID, len(rec.Attachments), len(r.AttachmentIDs))
		}
		if err := receiver.Accept(ctx, rec, sigKey); err != nil {
			t.Fatalf("accept %s: %v", r.SubmissionID, err)
		}
		rec.Close()
		// Off the list once the ledger projected the accept.
		eventually(t, time.Minute, func() error {
			if l := listed(t, receiver, dest.DestinationID, r.SubmissionID); l != 0 {
				return fmt.Errorf("%s still listed %d times after its accept", r.SubmissionID, l)
			}
			return nil
		})
	}
	for _, r := range receipts {
		waitState(t, sender.Sender(), r, client.StateAccepted)
	}
	js := jetStream(t, d.NATSURL)
	waitIngressEmpty(t, js)
	copies := inboxCopies(t, js, dest.DestinationID)
	for _, r := range receipts {
		if copies[r.SubmissionID] != 1 {
			t.Errorf("INBOX holds %d copies of %s, want 1", copies[r.SubmissionID], r.SubmissionID)
		}
	}
}

// routerStopped runs the roles as separate `serve` processes (here:
// run() calls of their own) against one NATS server and the PostgreSQL
// schema dev left in dir: the gateway and ledger keep taking submissions
// while no router runs; two routers started later share the backlog and
// route each submission once.
func routerStopped(t *testing.T, dir, dbURL string, ct *contract) {
	defer ct.report(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := readDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	node := bustest.Server(t)
	port := freePort(t)
	d.BaseURL = "http://127.0.0.1:" + strconv.Itoa(port)
	common := []string{"--nats-url", node.URL, "--database-url", dbURL,
		"--signing-key", filepath.Join(dir, "keys", "amtsbote.signing.jwk.json"),
		"--public-url", d.BaseURL, "--log-level", "warn"}
	startServe(t, append([]string{"--target=gateway,signer,ledger", "--listen", "127.0.0.1:" + strconv.Itoa(port)}, common...)...)
	router := func() *devProcess {
		return startServe(t, append([]string{"--target=router", "--listen", "127.0.0.1:0"}, common...)...)
	}
	first := router()

	dest := d.Destinations[0]
	ring, sigKey := destinationKeys(t, dest)
	sender := newActor(t, d, "sender", ct).Sender()
	receiver := newActor(t, d, "receiver", ct).Receiver()
	submit := func(i int) client.Receipt {
		t.Helper()
		r, err := sender.Submit(ctx, client.Submission{
			DestinationID: dest.DestinationID,
			ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Gewerbe"},
			Data:          fmt.Appendf(nil, `{"gewerbe":{"nummer":%d}}`, i),
		})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		return r
	}
	pickUp := func(r client.Receipt) {
		t.Helper()
		rec := fetch(t, receiver, r.SubmissionID, ring)
		defer rec.Close()
		if err := receiver.Accept(ctx, rec, sigKey); err != nil {
			t.Fatalf("accept %s: %v", r.SubmissionID, err)
		}
	}

	// While a router runs, a submission goes straight through.
	r0 := submit(0)
	waitListed(t, receiver, dest.DestinationID, r0.SubmissionID)
	pickUp(r0)

	first.stop(t)
	js := jetStream(t, node.URL)
	const n = 6
	var receipts []client.Receipt
	for i := 1; i <= n; i++ {
		receipts = append(receipts, submit(i))
	}
	eventually(t, 30*time.Second, func() error {
		msgs, err := streamMsgs(ctx, js, bus.StreamIngress)
		if err != nil || msgs != n {
			return fmt.Errorf("INGRESS holds %d messages (%v), want %d", msgs, err, n)
		}
		return nil
	})
	for _, r := range receipts {
		if l := listed(t, receiver, dest.DestinationID, r.SubmissionID); l != 0 {
			t.Fatalf("%s listed for pickup with no router running", r.SubmissionID)
		}
	}

	router()
	router()
	waitIngressEmpty(t, js)
	for _, r := range receipts {
		waitListed(t, receiver, dest.DestinationID, r.SubmissionID)
	}
	copies := inboxCopies(t, js, dest.DestinationID)
	for _, r := range append(receipts, r0) {
		if copies[r.SubmissionID] != 1 {
			t.Errorf("INBOX holds %d copies of %s, want 1", copies[r.SubmissionID], r.SubmissionID)
		}
	}
	for _, r := range receipts {
		pickUp(r)
	}
	for _, r := range append(receipts, r0) {
		waitState(t, sender, r, client.StateAccepted)
	}
}

// startServe runs `amtsbote serve` through run() until the test ends.
func startServe(t *testing.T, args ...string) *devProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &devProcess{cancel: cancel, done: make(chan error, 1), out: &flowtest.Buffer{}}
	logs := &flowtest.Buffer{}
	go func() {
		p.done <- Run(ctx, append([]string{"serve"}, args...), func(string) string { return "" }, p.out, logs)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() && logs.String() != "" {
			t.Logf("serve %s logged:\n%s", strings.Join(args[:1], " "), logs.String())
		}
	})
	eventually(t, time.Minute, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("serve exited: %v\n%s", err, logs.String())
		default:
		}
		if !strings.Contains(p.out.String(), "amtsbote serving") {
			return errors.New("not serving yet")
		}
		return nil
	})
	return p
}

// readDemo reads demo.json of a data dir.
func readDemo(dir string) (demoFile, error) {
	var d demoFile
	raw, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		return d, err
	}
	return d, json.Unmarshal(raw, &d)
}

// listed counts how often the pickup list names submissionID.
func listed(t *testing.T, r *client.Receiver, destinationID, submissionID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	for offset := 0; ; {
		page, err := r.ListSubmissions(ctx, destinationID, 500, offset)
		if err != nil {
			t.Fatalf("list submissions: %v", err)
		}
		for _, p := range page.Submissions {
			if p.SubmissionID == submissionID {
				n++
			}
		}
		offset += len(page.Submissions)
		if len(page.Submissions) == 0 || offset >= page.TotalCount {
			return n
		}
	}
}

// waitListed waits until the pickup list names submissionID, and fails if
// it names it more than once.
func waitListed(t *testing.T, r *client.Receiver, destinationID, submissionID string) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		switch n := listed(t, r, destinationID, submissionID); n {
		case 0:
			return fmt.Errorf("%s not listed for pickup", submissionID)
		case 1:
			return nil
		default:
			t.Fatalf("%s listed %d times for pickup", submissionID, n)
			return nil
		}
	})
}

// fetch picks a submission up and checks it completely. The
// submit-submission event is signed and projected asynchronously, so a
// fetch that finds it missing is repeated.
func fetch(t *testing.T, r *client.Receiver, submissionID string, ring client.KeyRing) *client.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var rec *client.Received
	eventually(t, time.Minute, func() error {
		var err error
		rec, err = r.Fetch(ctx, submissionID, ring)
		if errors.Is(err, client.ErrNoEvents) {
			return err
		}
		if err != nil {
			t.Fatalf("fetch %s: %v", submissionID, err)
		}
		return nil
	})
	if !rec.Verified() {
		t.Fatalf("fetch %s: not verified", submissionID)
	}
	return rec
}

// waitState waits until the sender's verified event log shows state.
func waitState(t *testing.T, s *client.Sender, r client.Receipt, state client.State) client.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var st client.Status
	eventually(t, time.Minute, func() error {
		var err error
		if st, err = s.StatusOf(ctx, r); err != nil && !errors.Is(err, client.ErrNoEvents) {
			t.Fatalf("status of %s: %v", r.SubmissionID, err)
		}
		if st.State != state {
			return fmt.Errorf("%s is %q, want %q", r.SubmissionID, st.State, state)
		}
		return nil
	})
	return st
}

// waitIngressEmpty waits until the router took everything off INGRESS.
func waitIngressEmpty(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msgs, err := streamMsgs(ctx, js, bus.StreamIngress)
		if err != nil || msgs != 0 {
			return fmt.Errorf("INGRESS holds %d messages (%v)", msgs, err)
		}
		return nil
	})
}

// replay sends every create and submit request twice, as a client does
// that lost the first answer, and records whether the answers agree.
type replay struct {
	next http.RoundTripper

	mu    sync.Mutex
	kinds []string
	errs  []string
}

// RoundTrip implements http.RoundTripper.
func (rp *replay) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := ""
	switch p := req.URL.Path; {
	case req.Method == http.MethodPost && p == "/v1/submissions":
		kind = "create"
	case req.Method == http.MethodPut && strings.HasPrefix(p, "/v1/submissions/") && strings.Count(p, "/") == 3:
		kind = "submit"
	default:
		return rp.next.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	send := func() (*http.Response, []byte, error) {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		resp, err := rp.next.RoundTrip(r)
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, b, err
	}
	first, b1, err := send()
	if err != nil {
		return nil, err
	}
	second, b2, err := send()
	if err != nil {
		return nil, err
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.kinds = append(rp.kinds, kind)
	if first.StatusCode != second.StatusCode || !bytes.Equal(b1, b2) {
		rp.errs = append(rp.errs, fmt.Sprintf("%s answered %d %s, then %d %s", kind, first.StatusCode, b1, second.StatusCode, b2))
	}
	return second, nil
}

// check fails t unless every kind was replayed with equal answers.
func (rp *replay) check(t *testing.T, kinds ...string) {
	t.Helper()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for _, e := range rp.errs {
		t.Errorf("a retried request got another answer: %s", e)
	}
	for _, k := range kinds {
		if !slices.Contains(rp.kinds, k) {
			t.Errorf("no %s request was retried (saw %v)", k, rp.kinds)
		}
	}
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	r := rand.NewChaCha8(s)
	_, _ = r.Read(b)
	return b
}

func mib(v float64) float64 { return v / (1 << 20) }
