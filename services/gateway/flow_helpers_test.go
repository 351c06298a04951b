package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	gojose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway"
	"github.com/amtsbote/amtsbote/services/ledger"
	"github.com/amtsbote/amtsbote/services/signer"
)

func init() {
	// Attachments are application/jose: a compact JWE, checked as text
	// against the spec's pattern.
	openapi3filter.RegisterBodyDecoder("application/jose", openapi3filter.PlainBodyDecoder)
}

// flowEnv is a gateway with a bus: a real JetStream server in the test,
// its event workers running, and every answer checked against
// FIT-Connect's Submission API when the spec is at hand.
type flowEnv struct {
	*env
	bus      *bus.Bus
	node     *bustest.Node
	contract routers.Router
}

func withBus(b *bus.Bus) envOption {
	return func(c *gateway.Config) { c.Bus = b }
}

func newFlowEnv(t *testing.T, st store.Store, opts ...envOption) *flowEnv {
	t.Helper()
	b, n := bustest.Bus(t)
	f := newFlowEnvOn(t, st, b, opts...)
	f.node = n
	return f
}

// newFlowEnvOn builds a gateway on st and b and runs a signer and a
// ledger beside it until the test ends: the signer publishes the
// gateway's own events from the outbox, the ledger projects EVENTS into
// the store.
func newFlowEnvOn(t *testing.T, st store.Store, b *bus.Bus, opts ...envOption) *flowEnv {
	t.Helper()
	e := newEnvOn(t, st, append([]envOption{withBus(b)}, opts...)...)
	f := &flowEnv{env: e, bus: b, contract: contractRouter(t, e.srv.URL)}
	sg, err := signer.New(signer.Config{Bus: b, Issuer: e.issuer, Workers: 2})
	if err != nil {
		t.Fatalf("new signer: %v", err)
	}
	flowtest.Start(t, sg)
	lg, err := ledger.New(ledger.Config{Bus: b, Store: st, Issuer: e.issuer, Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
	if err != nil {
		t.Fatalf("new ledger: %v", err)
	}
	flowtest.Start(t, lg)
	return f
}

// contractRouter finds the spec's operations for requests to baseURL. When
// the spec is absent, submissionAPISpec skips the subtest only, and
// answers go unchecked.
func contractRouter(t *testing.T, baseURL string) routers.Router {
	t.Helper()
	var router routers.Router
	t.Run("load Submission API spec", func(t *testing.T) {
		doc, err := openapi3.NewLoader().LoadFromFile(submissionAPISpec(t))
		if err != nil {
			t.Fatalf("load spec: %v", err)
		}
		doc.Servers = openapi3.Servers{{URL: baseURL}}
		// As in TestContract: the spec's examples break its own schemas.
		if router, err = legacy.NewRouter(doc, openapi3.DisableExamplesValidation()); err != nil {
			t.Fatalf("router: %v", err)
		}
	})
	return router
}

// reply is an answer read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// response rebuilds an *http.Response for the package's checks (wantProblem, decode).
func (r reply) response() *http.Response {
	return &http.Response{StatusCode: r.status, Header: r.header, Body: io.NopCloser(bytes.NewReader(r.body))}
}

func (r reply) problem(t *testing.T, status int, typ, field string) problem.Problem {
	t.Helper()
	return wantProblem(t, r.response(), status, typ, field)
}

func (r reply) want(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

// call sends a request (header holds name, value pairs) and checks the
// answer against the spec: a status the operation declares must match its
// schema; the spec does not list every status (415 on create, 503), and
// those are left to the test.
func (f *flowEnv) call(t *testing.T, method, path, token, contentType string, body io.Reader, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode, header: resp.Header}
	if r.body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	f.checkContract(t, method, path, token, r)
	return r
}

func (f *flowEnv) checkContract(t *testing.T, method, path, token string, r reply) {
	t.Helper()
	if f.contract == nil || method == http.MethodHead {
		// HEAD is no operation of the spec; it answers as GET without a body.
		return
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	route, params, err := f.contract.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s is no operation of the spec: %v", method, path, err)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  r.status,
		Header:  r.header,
		Body:    io.NopCloser(bytes.NewReader(r.body)),
		Options: &openapi3filter.Options{MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: %d answer does not match the spec: %v\nbody: %.2000s", method, path, r.status, err, r.body)
	}
}

func (f *flowEnv) callJSON(t *testing.T, method, path, token string, v any, header ...string) reply {
	t.Helper()
	body, ok := v.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return f.call(t, method, path, token, "application/json", bytes.NewReader(body), header...)
}

func decodeReply[T any](t *testing.T, r reply, status int) T {
	t.Helper()
	return decode[T](t, r.response(), status)
}

// created is FIT-Connect's SubmissionCreated.
type created struct {
	DestinationID string `json:"destinationId"`
	SubmissionID  string `json:"submissionId"`
	CaseID        string `json:"caseId"`
}

// createBody is a valid CreateSubmission for d announcing attachments.
func createBody(d store.Destination, attachments ...string) map[string]any {
	if attachments == nil {
		attachments = []string{}
	}
	return map[string]any{
		"destinationId":        d.ID,
		"announcedAttachments": attachments,
		"serviceType":          map[string]any{"name": "Anmeldung einer Gewerbeanzeige", "identifier": serviceA},
	}
}

func (f *flowEnv) create(t *testing.T, token string, body map[string]any, header ...string) created {
	t.Helper()
	return decodeReply[created](t, f.callJSON(t, http.MethodPost, "/v1/submissions", token, body, header...), http.StatusCreated)
}

// seal encrypts plaintext to the test encryption key under kid.
func seal(t *testing.T, plaintext []byte, kid string) string {
	t.Helper()
	kp := keyPair(t, encKey1)
	s, err := jose.Encrypt(plaintext, &gojose.JSONWebKey{Key: &kp.Private.PublicKey, KeyID: kid}, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unseal(t *testing.T, jwe string) []byte {
	t.Helper()
	b, err := jose.Decrypt(jwe, keyPair(t, encKey1).Private)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	return b
}

// withHeader replaces the protected header of a compact JWE.
func withHeader(jwe string, header map[string]any) string {
	h, _ := json.Marshal(header)
	_, rest, _ := strings.Cut(jwe, ".")
	return base64.RawURLEncoding.EncodeToString(h) + "." + rest
}

func authTag(jwe string) string { return jwe[strings.LastIndexByte(jwe, '.')+1:] }

// sealedSubmission is a created submission with its sealed parts.
type sealedSubmission struct {
	created
	dest        store.Destination
	metadata    string
	data        string
	attachments map[string]string // id → JWE
	order       []string
}

func (s sealedSubmission) submitBody() map[string]any {
	return map[string]any{"encryptedMetadata": s.metadata, "encryptedData": s.data}
}

func (s sealedSubmission) tags() set.AuthenticationTags {
	t := set.AuthenticationTags{Metadata: authTag(s.metadata), Data: authTag(s.data)}
	if len(s.attachments) > 0 {
		t.Attachments = map[string]string{}
		for id, a := range s.attachments {
			t.Attachments[id] = authTag(a)
		}
	}
	return t
}

// prepare creates a submission to d announcing n attachments, seals its
// metadata, data and attachments, and uploads the attachments.
func (f *flowEnv) prepare(t *testing.T, sender string, d store.Destination, n int) sealedSubmission {
	t.Helper()
	s := sealedSubmission{dest: d, attachments: map[string]string{}}
	for i := range n {
		id := newUUID(t)
		s.order = append(s.order, id)
		s.attachments[id] = seal(t, []byte(fmt.Sprintf("attachment %d of the test: %s", i, strings.Repeat("x", 1000*i))), d.EncryptionKID)
	}
	s.created = f.create(t, sender, createBody(d, s.order...))
	s.metadata = seal(t, []byte(`{"contentStructure":{"data":{"submissionSchema":{"schemaUri":"https://schema.fitko.de/fim/s00000096_1.0.schema.json","mimeType":"application/json"}}}}`), d.EncryptionKID)
	s.data = seal(t, []byte(`{"name":"Erika Mustermann"}`), d.EncryptionKID)
	for _, id := range s.order {
		f.upload(t, sender, s.SubmissionID, id, s.attachments[id]).want(t, http.StatusNoContent)
	}
	return s
}

func (f *flowEnv) upload(t *testing.T, token, sid, aid, jwe string) reply {
	t.Helper()
	return f.call(t, http.MethodPut, "/v1/submissions/"+sid+"/attachments/"+aid, token, "application/jose", strings.NewReader(jwe))
}

func (f *flowEnv) submit(t *testing.T, token string, s sealedSubmission) reply {
	t.Helper()
	return f.callJSON(t, http.MethodPut, "/v1/submissions/"+s.SubmissionID, token, s.submitBody())
}

// route marks a submission as routed, as the ledger does when the router
// delivered it to the inbox, once the ledger projected its submit.
func (f *flowEnv) route(t *testing.T, sid string) {
	t.Helper()
	f.waitStatus(t, sid, sealed.Submitted)
	now := time.Now()
	if _, err := f.st.UpdateSubmission(context.Background(), sid, func(s *store.Submission) error {
		s.RoutedAt = &now
		return nil
	}); err != nil {
		t.Fatalf("route %s: %v", sid, err)
	}
}

// waitStatus waits until the ledger has projected submission sid's
// events up to status.
func (f *flowEnv) waitStatus(t *testing.T, sid string, status sealed.Status) store.Submission {
	t.Helper()
	var sub store.Submission
	flowtest.Eventually(t, 10*time.Second, func() error {
		var err error
		if sub, err = f.st.Submission(context.Background(), sid); err != nil {
			return err
		}
		if sub.Status != status {
			return fmt.Errorf("submission %s is %s, want %s", sid, sub.Status, status)
		}
		return nil
	})
	return sub
}

// receiverSET signs an event about s with the destination's signing key.
func (f *flowEnv) receiverSET(t *testing.T, uri string, s sealedSubmission, payload any, edit func(*set.Claims)) string {
	t.Helper()
	return signSET(t, uri, s, payload, edit, keyPair(t, sigKey1).Private, s.dest.SigningKID)
}

func signSET(t *testing.T, uri string, s sealedSubmission, payload any, edit func(*set.Claims), key *rsa.PrivateKey, kid string) string {
	t.Helper()
	c, err := set.New(uri, s.dest.ID, s.SubmissionID, s.CaseID, payload, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&c)
	}
	tok, err := set.Sign(c, key, kid)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *flowEnv) postEvent(t *testing.T, token, caseID, set string) reply {
	t.Helper()
	return f.call(t, http.MethodPost, "/v1/cases/"+caseID+"/events", token, "application/jose", strings.NewReader(set))
}

type eventLogBody struct {
	Count      int      `json:"count"`
	Offset     int      `json:"offset"`
	TotalCount int      `json:"totalCount"`
	EventLog   []string `json:"eventLog"`
}

// eventTypes reads the event URIs of a case's log (without verifying).
func eventTypes(t *testing.T, log []string) []string {
	t.Helper()
	var out []string
	for _, tok := range log {
		_, c, err := set.Parse(tok)
		if err != nil {
			t.Fatalf("event log entry: %v", err)
		}
		uri, _, err := c.Event()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimPrefix(uri, set.EventBase))
	}
	return out
}

// waitEvents polls the case's event log until it holds want (in any order).
func (f *flowEnv) waitEvents(t *testing.T, token, caseID string, want ...string) eventLogBody {
	t.Helper()
	var log eventLogBody
	flowtest.Eventually(t, 10*time.Second, func() error {
		r := f.call(t, http.MethodGet, "/v1/cases/"+caseID+"/events", token, "", nil)
		if r.status != http.StatusOK {
			return fmt.Errorf("status %d: %s", r.status, r.body)
		}
		if err := json.Unmarshal(r.body, &log); err != nil {
			return err
		}
		got := eventTypes(t, log.EventLog)
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			return fmt.Errorf("events %v, want %v", got, w)
		}
		return nil
	})
	return log
}

func newUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// flowSnapshot is what the bad-input tests compare before and after: the
// submissions in the store, the events of the watched cases, what the
// streams received, the objects and the key-value entries.
type flowSnapshot struct {
	Incomplete []store.Submission
	Submitted  []store.Submission
	Watched    []store.Submission
	Events     map[string][]store.Event
	IngressSeq uint64
	EventsSeq  uint64
	Objects    map[string]string
	State      map[string]string
}

// settle waits until the outbox is empty and the ledger has projected
// every event, so that snapshots are stable. A listing of the bucket taken
// while the signer claims an entry (rewrites it) can miss the entry, so
// the outbox counts as empty only when it still is after the ledger
// caught up and EVENTS did not grow meanwhile.
func (f *flowEnv) settle(t *testing.T) {
	t.Helper()
	flowtest.Eventually(t, 10*time.Second, func() error {
		before := f.lastSeq(t, bus.StreamEvents)
		if err := f.outboxEmpty(t); err != nil {
			return err
		}
		flowtest.Settled(t, f.bus, bus.StreamEvents, ledger.DurableEvents)
		if err := f.outboxEmpty(t); err != nil {
			return err
		}
		if after := f.lastSeq(t, bus.StreamEvents); after != before {
			return fmt.Errorf("EVENTS grew from %d to %d while settling", before, after)
		}
		return nil
	})
}

func (f *flowEnv) outboxEmpty(t *testing.T) error {
	t.Helper()
	for k := range f.stateEntries(t) {
		if strings.HasPrefix(k, sealed.OutboxPrefix) {
			return fmt.Errorf("outbox holds %s", k)
		}
	}
	return nil
}

// lastSeq is the last sequence of the stream name.
func (f *flowEnv) lastSeq(t *testing.T, name string) uint64 {
	t.Helper()
	ctx := context.Background()
	str, err := f.bus.JetStream().Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func (f *flowEnv) stateEntries(t *testing.T) map[string]string {
	t.Helper()
	entries, err := f.bus.ListState(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		out[e.Key] = string(e.Value)
	}
	return out
}

func (f *flowEnv) snapshot(t *testing.T, watched ...sealedSubmission) flowSnapshot {
	t.Helper()
	f.settle(t)
	ctx := context.Background()
	far := time.Now().Add(365 * 24 * time.Hour)
	var s flowSnapshot
	var err error
	if s.Incomplete, err = f.st.DueSubmissions(ctx, store.DeadlineIncomplete, far, store.MaxPageLimit); err != nil {
		t.Fatal(err)
	}
	if s.Submitted, err = f.st.DueSubmissions(ctx, store.DeadlineUnpickedDelete, far, store.MaxPageLimit); err != nil {
		t.Fatal(err)
	}
	s.Events = map[string][]store.Event{}
	for _, w := range watched {
		sub, err := f.st.Submission(ctx, w.SubmissionID)
		if err != nil {
			t.Fatal(err)
		}
		s.Watched = append(s.Watched, sub)
		evs, _, err := f.st.Events(ctx, w.CaseID, store.Page{Limit: store.MaxPageLimit})
		if err != nil {
			t.Fatal(err)
		}
		s.Events[w.CaseID] = evs
	}
	s.IngressSeq = f.lastSeq(t, bus.StreamIngress)
	s.EventsSeq = f.lastSeq(t, bus.StreamEvents)
	obs, err := f.bus.JetStream().ObjectStore(ctx, bus.BucketPayloads)
	if err != nil {
		t.Fatal(err)
	}
	list, err := obs.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatal(err)
	}
	s.Objects = map[string]string{}
	for _, o := range list {
		s.Objects[o.Name] = o.Digest
	}
	s.State = f.stateEntries(t)
	return s
}

// wantUnchangedFlow checks that nothing was stored or published since before.
func (f *flowEnv) wantUnchangedFlow(t *testing.T, before flowSnapshot, watched ...sealedSubmission) {
	t.Helper()
	after := f.snapshot(t, watched...)
	b, _ := json.MarshalIndent(before, "", " ")
	a, _ := json.MarshalIndent(after, "", " ")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the request changed the flow's state:\nbefore %s\nafter  %s", b, a)
	}
}
