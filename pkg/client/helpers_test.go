package client

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// Identifiers of the test destination and service.
const (
	destinationID = "40847c29-06aa-40e2-bf28-c29884c694c4"
	serviceURN    = "urn:de:fim:leika:leistung:99010003001006"
	schemaURI     = "https://schema.example.org/bauantrag/1.0.0/bauantrag.schema.json"
	clientID      = "portal-test-client"
	clientSecret  = "portal-test-secret-0123456789abcdef"
)

// keySet holds the RSA-4096 keys of these tests. Generating one takes
// seconds under -race, so they are made once per test binary.
type keySet struct {
	enc      jose.KeyPair // the destination's encryption key
	enc2     jose.KeyPair // its successor after a key roll
	sig      jose.KeyPair // the destination's signing key
	backbone jose.KeyPair // the backbone's signing key
}

var (
	keysOnce sync.Once
	keys     keySet
	keysErr  error
)

func testKeys(tb testing.TB) keySet {
	tb.Helper()
	keysOnce.Do(func() {
		var wg sync.WaitGroup
		var errs [4]error
		for i, spec := range []struct {
			dst  *jose.KeyPair
			p    jose.Purpose
			kid  string
			name string
		}{
			{&keys.enc, jose.Encryption, "enc-key-0001", "destination encryption"},
			{&keys.enc2, jose.Encryption, "enc-key-0002", "destination encryption, rolled"},
			{&keys.sig, jose.Signing, "sig-key-0001", "destination signing"},
			{&keys.backbone, jose.Signing, "backbone-key-01", "backbone signing"},
		} {
			wg.Go(func() { *spec.dst, errs[i] = jose.GenerateKeyPair(spec.p, spec.kid, spec.name) })
		}
		wg.Wait()
		keysErr = errors.Join(errs[:]...)
	})
	if keysErr != nil {
		tb.Fatalf("generate test keys: %v", keysErr)
	}
	return keys
}

// encryptDeflate encrypts with go-jose and DEFLATE compression, which
// jose.Encrypt does not offer but FIT-Connect senders may use.
func encryptDeflate(tb testing.TB, plain []byte, kp jose.KeyPair) string {
	tb.Helper()
	enc, err := gojose.NewEncrypter(gojose.A256GCM,
		gojose.Recipient{Algorithm: gojose.RSA_OAEP_256, Key: &kp.Private.PublicKey, KeyID: kp.Public.KeyID},
		&gojose.EncrypterOptions{Compression: gojose.DEFLATE})
	if err != nil {
		tb.Fatal(err)
	}
	obj, err := enc.Encrypt(plain)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// metadataSchemaFile is FIT-Connect's metadata schema in the shared
// reference files beside the repository.
func metadataSchemaFile() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "fit-connect", "metadata.schema.v1.0.0.json")
	_, err := os.Stat(p)
	return p, err
}

// metadataSchemaPath skips the test when the schema is absent.
func metadataSchemaPath(tb testing.TB) string {
	tb.Helper()
	p, err := metadataSchemaFile()
	if err != nil {
		tb.Skipf("FIT-Connect metadata schema not available: %v", err)
	}
	return p
}

// schemaOptions validates metadata against FIT-Connect's schema when the
// reference files are present, so that round trips prove schema-valid
// output; without them the code's own checks apply.
func schemaOptions(tb testing.TB) []Option {
	tb.Helper()
	p, err := metadataSchemaFile()
	if err != nil {
		tb.Logf("FIT-Connect metadata schema not available, checking its rules in code only: %v", err)
		return nil
	}
	return []Option{MetadataSchema(p)}
}

// locked runs f with the API's state locked, for tests that change it.
func (a *fitAPI) locked(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
}

func (a *fitAPI) createCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creates
}

func (a *fitAPI) uploadCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.uploads
}

// fitAPI is an in-memory Submission API for exercising the SDK's side of
// the protocol: real tokens, real JWE checks (jose.ScanJWE, ParseJWE) and
// real SETs signed by a backbone key. It keeps no rules beyond those the
// SDK's answers depend on; the gateway's own tests cover the server.
type fitAPI struct {
	t   testing.TB
	srv *httptest.Server
	k   keySet

	mu            sync.Mutex
	tokenTTL      int
	tokens        map[string]bool
	tokenRequests int
	destination   Destination
	keys          map[string][]byte // by kid
	subs          map[string]*fitSubmission
	events        map[string][]string // by case
	idempotency   map[string]created
	creates       int
	// beforeSubmit may alter a submission before the backbone records
	// its submit-submission event, as a dishonest backbone could.
	beforeSubmit func(*fitSubmission)
	// unavailable answers that many requests with 503 first.
	unavailable int
	// unknownCases answers that many event log requests with 404 first,
	// as a backbone does before it recorded a case's first event.
	unknownCases int
	// lostDecisions cuts the connection instead of answering that many
	// posted events, recorded or not, as a crashing backbone does.
	lostDecisions int
	// posted are the tokens posted to event logs, in order.
	posted []string
	// mixedUploads answers that many submits 422 missing-attachments for
	// every attachment, as after two uploads of each at once.
	mixedUploads int
	// uploads counts attachment uploads.
	uploads int
}

type fitSubmission struct {
	ID, CaseID    string
	Service       ServiceType
	Announced     []string
	Attachments   map[string]string
	Metadata      string
	Data          string
	Submitted     bool
	SubmittedTags set.AuthenticationTags
}

func newFitAPI(t testing.TB) *fitAPI {
	t.Helper()
	k := testKeys(t)
	a := &fitAPI{
		t: t, k: k, tokenTTL: 1800,
		tokens: make(map[string]bool), keys: make(map[string][]byte),
		subs: make(map[string]*fitSubmission), events: make(map[string][]string),
		idempotency: make(map[string]created),
		destination: Destination{
			ID: destinationID, Status: "active", EncryptionKID: k.enc.Public.KeyID, MetadataVersions: []string{"1.0.0"},
			Services: []DestinationService{{
				Identifier: serviceURN, Regions: []string{"DE08"},
				SubmissionSchemas: []SubmissionSchema{{SchemaURI: schemaURI, MimeType: "application/json"}},
			}},
		},
	}
	for _, kp := range []jose.KeyPair{k.enc, k.enc2, k.sig} {
		raw, err := kp.PublicJSON()
		if err != nil {
			t.Fatal(err)
		}
		a.keys[kp.Public.KeyID] = raw
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", a.token)
	mux.HandleFunc("GET /.well-known/jwks.json", a.jwks)
	mux.HandleFunc("GET /v1/destinations/{id}", a.authed(a.getDestination))
	mux.HandleFunc("GET /v1/destinations/{id}/keys/{kid}", a.getKey)
	mux.HandleFunc("POST /v1/submissions", a.authed(a.create))
	mux.HandleFunc("GET /v1/submissions", a.authed(a.list))
	mux.HandleFunc("PUT /v1/submissions/{id}/attachments/{aid}", a.authed(a.putAttachment))
	mux.HandleFunc("GET /v1/submissions/{id}/attachments/{aid}", a.authed(a.getAttachment))
	mux.HandleFunc("PUT /v1/submissions/{id}", a.authed(a.submit))
	mux.HandleFunc("GET /v1/submissions/{id}", a.authed(a.getSubmission))
	mux.HandleFunc("GET /v1/cases/{id}/events", a.authed(a.getEvents))
	mux.HandleFunc("POST /v1/cases/{id}/events", a.authed(a.postEvent))
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// client returns an SDK client of the API with the test credentials.
func (a *fitAPI) client(tb testing.TB, opts ...Option) *Client {
	tb.Helper()
	opts = append([]Option{Credentials(clientID, clientSecret), Retries(2, time.Millisecond), AttachmentDir(tb.TempDir())}, opts...)
	c, err := New(a.srv.URL, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func (a *fitAPI) fail(w http.ResponseWriter, p *problem.Problem) { problem.Write(w, p) }

func (a *fitAPI) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		unavailable := a.unavailable > 0
		if unavailable {
			a.unavailable--
		}
		ok := a.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		a.mu.Unlock()
		if unavailable {
			a.fail(w, problem.Unavailable("try again"))
			return
		}
		if !ok {
			a.fail(w, problem.Unauthorized("no valid token"))
			return
		}
		h(w, r)
	}
}

func (a *fitAPI) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		a.fail(w, problem.InvalidRequest("grant_type", "want client_credentials"))
		return
	}
	if r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != clientSecret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"client authentication failed"}`)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	a.mu.Lock()
	a.tokens[tok] = true
	a.tokenRequests++
	ttl := a.tokenTTL
	a.mu.Unlock()
	writeTestJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": ttl})
}

// revokeTokens forgets every issued token, as a restarted issuer might.
func (a *fitAPI) revokeTokens() {
	a.mu.Lock()
	clear(a.tokens)
	a.mu.Unlock()
}

func (a *fitAPI) jwks(w http.ResponseWriter, _ *http.Request) {
	raw, err := a.k.backbone.PublicJSON()
	if err != nil {
		a.fail(w, problem.Internal())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"keys":[%s]}`, raw)
}

func (a *fitAPI) getDestination(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	d := a.destination
	a.mu.Unlock()
	if r.PathValue("id") != d.ID {
		a.fail(w, problem.DestinationNotFound(r.PathValue("id")))
		return
	}
	writeTestJSON(w, http.StatusOK, d)
}

func (a *fitAPI) getKey(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	raw, ok := a.keys[r.PathValue("kid")]
	a.mu.Unlock()
	if r.PathValue("id") != destinationID || !ok {
		a.fail(w, problem.KeyNotFound(r.PathValue("id"), r.PathValue("kid")))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}

func (a *fitAPI) create(w http.ResponseWriter, r *http.Request) {
	var in createBody
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		a.fail(w, problem.MalformedJSON("", err.Error()))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if in.DestinationID != a.destination.ID {
		a.fail(w, problem.DestinationNotFound(in.DestinationID))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if c, ok := a.idempotency[key]; ok && key != "" {
		writeTestJSON(w, http.StatusCreated, c)
		return
	}
	a.creates++
	s := &fitSubmission{ID: uuid.NewString(), CaseID: in.CaseID, Service: in.ServiceType, Announced: in.AnnouncedAttachments, Attachments: map[string]string{}}
	if s.CaseID == "" {
		s.CaseID = uuid.NewString()
	}
	a.subs[s.ID] = s
	c := created{DestinationID: in.DestinationID, SubmissionID: s.ID, CaseID: s.CaseID}
	if key != "" {
		a.idempotency[key] = c
	}
	a.record(s, set.CreateSubmission, nil)
	writeTestJSON(w, http.StatusCreated, c)
}

// record appends an event signed by the backbone; a.mu is held.
func (a *fitAPI) record(s *fitSubmission, event string, payload any) {
	a.events[s.CaseID] = append(a.events[s.CaseID], a.signed(a.k.backbone, a.srv.URL, s, event, payload))
}

func (a *fitAPI) signed(kp jose.KeyPair, issuer string, s *fitSubmission, event string, payload any) string {
	c, err := set.New(event, issuer, s.ID, s.CaseID, payload, time.Now())
	if err != nil {
		a.t.Fatal(err)
	}
	tok, err := set.Sign(c, kp.Private, kp.Public.KeyID)
	if err != nil {
		a.t.Fatal(err)
	}
	return tok
}

func (a *fitAPI) sub(w http.ResponseWriter, r *http.Request) (*fitSubmission, bool) {
	s, ok := a.subs[r.PathValue("id")]
	if !ok {
		a.fail(w, problem.SubmissionNotFound(r.PathValue("id")))
	}
	return s, ok
}

func (a *fitAPI) putAttachment(w http.ResponseWriter, r *http.Request) {
	var buf strings.Builder
	if _, _, err := jose.ScanJWE(r.Body, &buf, 1<<30); err != nil {
		a.fail(w, problem.Unprocessable("body", err.Error()))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sub(w, r)
	if !ok {
		return
	}
	aid := r.PathValue("aid")
	if !slices.Contains(s.Announced, aid) || s.Submitted {
		a.fail(w, problem.Unprocessable("attachmentId", "not announced"))
		return
	}
	s.Attachments[aid] = buf.String()
	a.uploads++
	w.WriteHeader(http.StatusNoContent)
}

func (a *fitAPI) submit(w http.ResponseWriter, r *http.Request) {
	var in submitBody
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		a.fail(w, problem.MalformedJSON("", err.Error()))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sub(w, r)
	if !ok {
		return
	}
	if s.Submitted {
		if s.Metadata == in.EncryptedMetadata && s.Data == in.EncryptedData {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		a.fail(w, problem.Conflict("", "submitted already"))
		return
	}
	if len(s.Attachments) != len(s.Announced) {
		a.fail(w, problem.Unprocessable("attachments", "missing"))
		return
	}
	if a.mixedUploads > 0 {
		a.mixedUploads--
		a.fail(w, problem.MissingAttachments(s.ID, s.Announced))
		return
	}
	s.Metadata, s.Data, s.Submitted = in.EncryptedMetadata, in.EncryptedData, true
	if a.beforeSubmit != nil {
		a.beforeSubmit(s)
	}
	s.SubmittedTags = set.AuthenticationTags{Metadata: lastSegment(s.Metadata), Data: lastSegment(s.Data)}
	if len(s.Attachments) > 0 {
		s.SubmittedTags.Attachments = make(map[string]string)
		for id, jwe := range s.Attachments {
			s.SubmittedTags.Attachments[id] = lastSegment(jwe)
		}
	}
	a.record(s, set.SubmitSubmission, set.SubmitPayload{AuthenticationTags: s.SubmittedTags})
	writeTestJSON(w, http.StatusAccepted, map[string]any{"destinationId": destinationID, "submissionId": s.ID, "caseId": s.CaseID,
		"attachments": s.Announced, "serviceType": s.Service})
}

func lastSegment(jwe string) string {
	if jwe == "" {
		return ""
	}
	return jwe[strings.LastIndexByte(jwe, '.')+1:]
}

func (a *fitAPI) list(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var all []Pickup
	for _, s := range a.subs {
		if s.Submitted {
			all = append(all, Pickup{DestinationID: destinationID, SubmissionID: s.ID, CaseID: s.CaseID})
		}
	}
	slices.SortFunc(all, func(x, y Pickup) int { return strings.Compare(x.SubmissionID, y.SubmissionID) })
	limit, offset := queryInt(r, "limit", 100), queryInt(r, "offset", 0)
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	writeTestJSON(w, http.StatusOK, PickupList{Count: len(page), Offset: offset, TotalCount: len(all), Submissions: page})
}

func queryInt(r *http.Request, name string, def int) int {
	if n, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return n
	}
	return def
}

func (a *fitAPI) getSubmission(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sub(w, r)
	if !ok {
		return
	}
	writeTestJSON(w, http.StatusOK, wireSubmission{
		DestinationID: destinationID, SubmissionID: s.ID, CaseID: s.CaseID, Attachments: s.Announced,
		ServiceType: s.Service, EncryptedMetadata: s.Metadata, EncryptedData: s.Data,
	})
}

func (a *fitAPI) getAttachment(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	s, ok := a.sub(w, r)
	var jwe string
	if ok {
		jwe, ok = s.Attachments[r.PathValue("aid")]
		if !ok {
			a.fail(w, problem.NotFound("attachmentId", "no such attachment"))
		}
	}
	a.mu.Unlock()
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/jose")
	_, _ = io.WriteString(w, jwe)
}

func (a *fitAPI) getEvents(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	all := slices.Clone(a.events[r.PathValue("id")])
	unknown := a.unknownCases > 0
	if unknown {
		a.unknownCases--
	}
	a.mu.Unlock()
	if unknown {
		a.fail(w, problem.CaseNotFound(r.PathValue("id")))
		return
	}
	limit, offset := queryInt(r, "limit", 100), queryInt(r, "offset", 0)
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	if page == nil {
		page = []string{}
	}
	writeTestJSON(w, http.StatusOK, eventLogPage{Count: len(page), Offset: offset, TotalCount: len(all), EventLog: page})
}

// postEvent records a receiver's SET after checking it as Amtsbote does:
// signature with the destination's signing key, issuer, case; the same
// token again changes nothing, a second decision about a submission is a
// 409.
func (a *fitAPI) postEvent(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	claims, err := set.Verify(string(body), &a.k.sig.Private.PublicKey)
	if err != nil {
		a.fail(w, problem.Unprocessable("body", err.Error()))
		return
	}
	cid, _ := claims.CaseID()
	if claims.Issuer != destinationID || cid != r.PathValue("id") {
		a.fail(w, problem.Unprocessable("iss", "wrong issuer or case"))
		return
	}
	sid, _ := claims.SubmissionID()
	a.mu.Lock()
	a.posted = append(a.posted, string(body))
	var refused *problem.Problem
	recorded := false
	for _, tok := range a.events[cid] {
		_, c, _ := set.Parse(tok)
		uri, _, _ := c.Event()
		if tok == string(body) {
			recorded = true
		} else if esid, _ := c.SubmissionID(); esid == sid && (uri == set.AcceptSubmission || uri == set.RejectSubmission) {
			refused = problem.InvalidTransition("the submission is decided")
		}
	}
	if !recorded && refused == nil {
		a.events[cid] = append(a.events[cid], string(body))
	}
	lost := a.lostDecisions > 0
	if lost {
		a.lostDecisions--
	}
	a.mu.Unlock()
	switch {
	case lost:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			a.t.Errorf("hijack: %v", err)
			return
		}
		_ = conn.Close()
	case recorded:
		w.WriteHeader(http.StatusNoContent)
	case refused != nil:
		a.fail(w, refused)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// appendEvent adds a token to a case's log as it is.
func (a *fitAPI) appendEvent(caseID, token string) {
	a.mu.Lock()
	a.events[caseID] = append(a.events[caseID], token)
	a.mu.Unlock()
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
