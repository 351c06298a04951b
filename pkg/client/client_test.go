package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// submission returns a valid submission with data and two attachments,
// one given as a reader and one as bytes.
func submission(pdf, photo []byte) Submission {
	return Submission{
		DestinationID: destinationID,
		ServiceType:   ServiceType{Identifier: serviceURN, Name: "Bauantrag"},
		Region:        "DE083110001001",
		Data:          []byte(`{"bauherr":"Erika Mustermann","flurstueck":"123/4"}`),
		Attachments: []Attachment{
			{Filename: "lageplan.pdf", MimeType: "application/pdf", Content: bytes.NewReader(pdf)},
			{Filename: "foto.jpg", MimeType: "image/jpeg", Purpose: PurposeReport, Bytes: photo},
		},
		ExtraMetadata: map[string]any{
			"replyChannel":            map[string]any{"eMail": map[string]any{"address": "erika@example.org"}},
			"additionalReferenceInfo": map[string]any{"senderReference": "BA-2026-0042"},
		},
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestSubmitFetchAcceptStatus(t *testing.T) {
	api := newFitAPI(t)
	opts := schemaOptions(t)
	sender := api.client(t, opts...).Sender()
	receiver := api.client(t, opts...).Receiver()
	k := testKeys(t)
	ctx := context.Background()

	pdf, photo := randomBytes(3*gcmChunk+17), randomBytes(1000)
	sub := submission(pdf, photo)
	receipt, err := sender.Submit(ctx, sub)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if len(receipt.AttachmentIDs) != 2 || len(receipt.AuthenticationTags.Attachments) != 2 || receipt.AuthenticationTags.Data == "" {
		t.Fatalf("receipt = %+v", receipt)
	}

	list, err := receiver.ListSubmissions(ctx, destinationID, 10, 0)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if list.TotalCount != 1 || len(list.Submissions) != 1 || list.Submissions[0].SubmissionID != receipt.SubmissionID {
		t.Fatalf("list = %+v", list)
	}

	ring, err := NewKeyRing(k.enc)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := receiver.Fetch(ctx, receipt.SubmissionID, ring)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	defer rec.Close()
	if !rec.Verified() || rec.CaseID != receipt.CaseID || !bytes.Equal(rec.Data, sub.Data) || rec.DataMimeType != "application/json" {
		t.Fatalf("received %+v", rec)
	}
	if !rec.AuthenticationTags.Equal(receipt.AuthenticationTags) {
		t.Fatalf("tags %+v, want %+v", rec.AuthenticationTags, receipt.AuthenticationTags)
	}
	if got := rec.Metadata.ContentStructure.Data.SubmissionSchema.SchemaURI; got != schemaURI {
		t.Errorf("schema uri = %q, want the destination's %q", got, schemaURI)
	}
	if !strings.Contains(string(rec.Metadata.Raw), "BA-2026-0042") {
		t.Errorf("metadata lacks the extra members: %s", rec.Metadata.Raw)
	}
	for i, want := range [][]byte{pdf, photo} {
		a := rec.Attachments[i]
		got, err := a.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || a.ID != receipt.AttachmentIDs[i] || a.Filename != sub.Attachments[i].Filename || a.Size != int64(len(want)) {
			t.Errorf("attachment %d: %+v, %d bytes", i, a.AttachmentInfo, len(got))
		}
	}
	if rec.Attachments[0].Purpose != PurposeAttachment || rec.Attachments[1].Purpose != PurposeReport {
		t.Errorf("purposes %s, %s", rec.Attachments[0].Purpose, rec.Attachments[1].Purpose)
	}

	st, err := sender.Status(ctx, receipt.CaseID, receipt.SubmissionID)
	if err != nil || st.State != StateSubmitted || st.Decision != "" {
		t.Fatalf("status before accept = %+v, %v", st, err)
	}
	if err := receiver.Accept(ctx, rec, k.sig); err != nil {
		t.Fatalf("accept: %v", err)
	}
	st, err = sender.StatusOf(ctx, receipt)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.State != StateAccepted || st.Decision != StateAccepted || len(st.Events) != 3 {
		t.Fatalf("status = %+v", st)
	}

	paths := []string{rec.Attachments[0].Path, rec.Attachments[1].Path}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("attachment file %s not removed: %v", p, err)
		}
	}
}

// TestEmptyAttachment: an empty file travels as a JWE with an empty
// ciphertext and arrives empty, its hash checked.
func TestEmptyAttachment(t *testing.T) {
	api := newFitAPI(t)
	opts := schemaOptions(t)
	ctx := context.Background()
	sub := submission(randomBytes(100), randomBytes(100))
	sub.Attachments = append(sub.Attachments, Attachment{Filename: "leer.txt", MimeType: "text/plain", Bytes: []byte{}})
	receipt, err := api.client(t, opts...).Sender().Submit(ctx, sub)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	ring, err := NewKeyRing(testKeys(t).enc)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := api.client(t, opts...).Receiver().Fetch(ctx, receipt.SubmissionID, ring)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	defer rec.Close()
	a := rec.Attachments[2]
	got, err := a.Bytes()
	if err != nil || len(got) != 0 || a.Size != 0 || a.Filename != "leer.txt" {
		t.Fatalf("empty attachment: %+v, %d bytes, %v", a.AttachmentInfo, len(got), err)
	}
}

// TestKeyRoll: after the destination rolls its encryption key, a ring with
// the new key opens new submissions, a ring without it names the kid.
func TestKeyRoll(t *testing.T) {
	api := newFitAPI(t)
	k := testKeys(t)
	api.locked(func() { api.destination.EncryptionKID = k.enc2.Public.KeyID })
	sender, receiver := api.client(t).Sender(), api.client(t).Receiver()
	ctx := context.Background()

	receipt, err := sender.Submit(ctx, submission(randomBytes(100), randomBytes(100)))
	if err != nil {
		t.Fatal(err)
	}
	both, _ := NewKeyRing(k.enc, k.enc2)
	rec, err := receiver.Fetch(ctx, receipt.SubmissionID, both)
	if err != nil {
		t.Fatalf("fetch with both keys: %v", err)
	}
	_ = rec.Close()

	// A key the destination publishes but the ring lacks is the
	// receiver's to mend: no *CheckError, which would serve a reject.
	old, _ := NewKeyRing(k.enc)
	rec, err = receiver.Fetch(ctx, receipt.SubmissionID, old)
	var ce *CheckError
	if !errors.Is(err, ErrUnknownKey) || errors.As(err, &ce) || rec == nil {
		t.Fatalf("fetch with the old key only: %v, want ErrUnknownKey and no CheckError", err)
	}
}

// reencrypt returns a JWE of plain to the test destination's key.
func reencrypt(t *testing.T, plain []byte) string {
	t.Helper()
	k := testKeys(t)
	s, err := jose.Encrypt(plain, &k.enc.Public, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTamperedSubmission: every alteration of a submission on its way is
// detected by Fetch, named, and leads to a rejection the sender sees.
func TestTamperedSubmission(t *testing.T) {
	k := testKeys(t)
	for _, tc := range []struct {
		name string
		// before alters the submission before the backbone records its
		// tags, after alters it afterwards.
		before, after func(t *testing.T, s *fitSubmission, ids []string)
		part          string // "attachment" stands for the first attachment
		want          error
	}{
		{
			name:   "data replaced",
			before: func(t *testing.T, s *fitSubmission, _ []string) { s.Data = reencrypt(t, []byte(`{"bauherr":"Max"}`)) },
			part:   "data", want: ErrHashMismatch,
		},
		{
			name: "attachment replaced",
			before: func(t *testing.T, s *fitSubmission, ids []string) {
				s.Attachments[ids[0]] = reencrypt(t, []byte("another plan"))
			},
			part: "attachment", want: ErrHashMismatch,
		},
		{
			name:  "data replaced after submit",
			after: func(t *testing.T, s *fitSubmission, _ []string) { s.Data = reencrypt(t, []byte(`{"bauherr":"Max"}`)) },
			part:  "data", want: ErrTagMismatch,
		},
		{
			name: "attachment replaced after submit",
			after: func(t *testing.T, s *fitSubmission, ids []string) {
				s.Attachments[ids[1]] = reencrypt(t, []byte("another photo"))
			},
			part: "attachment:1", want: ErrTagMismatch,
		},
		{
			name: "attachment ciphertext flipped",
			after: func(t *testing.T, s *fitSubmission, ids []string) {
				parts := strings.Split(s.Attachments[ids[0]], ".")
				c := []byte(parts[3])
				c[len(c)/2] = map[bool]byte{true: 'A', false: 'B'}[c[len(c)/2] != 'A']
				parts[3] = string(c)
				s.Attachments[ids[0]] = strings.Join(parts, ".")
			},
			part: "attachment", want: jose.ErrDecrypt,
		},
		{
			name: "metadata without attachments",
			before: func(t *testing.T, s *fitSubmission, _ []string) {
				s.Metadata = reencrypt(t, []byte(`{"contentStructure":{"attachments":[]}}`))
			},
			part: "submission", want: ErrContentMismatch,
		},
		{
			name: "metadata breaking the schema",
			before: func(t *testing.T, s *fitSubmission, _ []string) {
				s.Metadata = reencrypt(t, []byte(`{"contentStructure":{}}`))
			},
			part: "metadata", want: ErrInvalidMetadata,
		},
		{
			// A kid the destination does not publish: the sender's fault.
			name: "metadata encrypted to another key",
			before: func(t *testing.T, s *fitSubmission, _ []string) {
				other := k.enc2.Public
				other.KeyID = "enc-key-unpublished"
				m, err := jose.Encrypt([]byte(`{}`), &other, "")
				if err != nil {
					t.Fatal(err)
				}
				s.Metadata = m
			},
			part: "metadata", want: ErrUnknownKey,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFitAPI(t)
			sender, receiver := api.client(t).Sender(), api.client(t).Receiver()
			ctx := context.Background()
			var ids []string
			api.beforeSubmit = func(s *fitSubmission) {
				ids = s.Announced
				if tc.before != nil {
					tc.before(t, s, ids)
				}
			}
			receipt, err := sender.Submit(ctx, submission(randomBytes(5000), randomBytes(700)))
			if err != nil {
				t.Fatal(err)
			}
			if tc.after != nil {
				api.mu.Lock()
				tc.after(t, api.subs[receipt.SubmissionID], ids)
				api.mu.Unlock()
			}
			part := tc.part
			switch part {
			case "attachment":
				part = "attachment:" + ids[0]
			case "attachment:1":
				part = "attachment:" + ids[1]
			}

			ring, _ := NewKeyRing(k.enc)
			rec, err := receiver.Fetch(ctx, receipt.SubmissionID, ring)
			var ce *CheckError
			if !errors.Is(err, tc.want) || !errors.As(err, &ce) || ce.Part != part {
				t.Fatalf("fetch: %v, want %v at %s", err, tc.want, part)
			}
			if rec == nil || rec.Verified() {
				t.Fatalf("received %+v", rec)
			}
			for _, a := range rec.Attachments {
				if a.Path != "" {
					t.Errorf("attachment %s kept at %s after a failed check", a.ID, a.Path)
				}
			}
			if err := receiver.Accept(ctx, rec, k.sig); !errors.Is(err, ErrNotVerified) {
				t.Fatalf("accept of a broken submission: %v", err)
			}
			if err := receiver.Reject(ctx, rec, k.sig, ce.Problem()); err != nil {
				t.Fatalf("reject: %v", err)
			}
			st, err := sender.Status(ctx, receipt.CaseID, receipt.SubmissionID)
			if err != nil {
				t.Fatal(err)
			}
			if st.Decision != StateRejected || len(st.Problems) != 1 || st.Problems[0].Instance != part ||
				!strings.HasPrefix(st.Problems[0].Type, problem.Base) {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

// TestEventLogVerification: tokens signed with a wrong key, issued by the
// wrong party or for another case make the event log fail.
func TestEventLogVerification(t *testing.T) {
	k := testKeys(t)
	for _, tc := range []struct {
		name  string
		token func(a *fitAPI, s *fitSubmission) string
		want  error
	}{
		{"backbone event signed with another key", func(a *fitAPI, s *fitSubmission) string {
			wrong := k.backbone
			wrong.Private = k.sig.Private
			return a.signed(wrong, a.srv.URL, s, set.NotifySubmission, nil)
		}, set.ErrSignature},
		{"destination event signed with another key", func(a *fitAPI, s *fitSubmission) string {
			wrong := k.sig
			wrong.Private = k.backbone.Private
			return a.signed(wrong, destinationID, s, set.AcceptSubmission, set.AcceptPayload{AuthenticationTags: s.SubmittedTags})
		}, set.ErrSignature},
		{"accept issued by the backbone", func(a *fitAPI, s *fitSubmission) string {
			return a.signed(k.backbone, a.srv.URL, s, set.AcceptSubmission, set.AcceptPayload{AuthenticationTags: s.SubmittedTags})
		}, ErrUntrustedEvent},
		{"submit issued by the destination", func(a *fitAPI, s *fitSubmission) string {
			return a.signed(k.sig, destinationID, s, set.SubmitSubmission, set.SubmitPayload{AuthenticationTags: s.SubmittedTags})
		}, ErrUntrustedEvent},
		{"event of another case", func(a *fitAPI, s *fitSubmission) string {
			other := *s
			other.CaseID = "452b5ee6-35df-441a-bd39-6141723cf914"
			return a.signed(k.backbone, a.srv.URL, &other, set.NotifySubmission, nil)
		}, ErrUntrustedEvent},
		{"backbone key not published", func(a *fitAPI, s *fitSubmission) string {
			unknown := k.backbone
			unknown.Public.KeyID = "retired-key-9"
			return a.signed(unknown, a.srv.URL, s, set.NotifySubmission, nil)
		}, ErrUntrustedEvent},
		{"destination signing with its encryption key", func(a *fitAPI, s *fitSubmission) string {
			return a.signed(k.enc, destinationID, s, set.AcceptSubmission, set.AcceptPayload{AuthenticationTags: s.SubmittedTags})
		}, jose.ErrKeyRule},
		{"token that is no SET", func(*fitAPI, *fitSubmission) string { return "not.a.token" }, set.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFitAPI(t)
			sender := api.client(t).Sender()
			ctx := context.Background()
			receipt, err := sender.Submit(ctx, submission(randomBytes(10), randomBytes(10)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sender.EventLog(ctx, receipt.CaseID); err != nil {
				t.Fatalf("event log before: %v", err)
			}
			api.mu.Lock()
			s := api.subs[receipt.SubmissionID]
			api.mu.Unlock()
			api.appendEvent(receipt.CaseID, tc.token(api, s))
			if _, err := sender.EventLog(ctx, receipt.CaseID); !errors.Is(err, tc.want) {
				t.Fatalf("event log: %v, want %v", err, tc.want)
			}
			if _, err := sender.Status(ctx, receipt.CaseID, receipt.SubmissionID); !errors.Is(err, tc.want) {
				t.Fatalf("status: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestStatusTags: a properly signed accept with other tags than the
// submit's does not count as acceptance.
func TestStatusTags(t *testing.T) {
	k := testKeys(t)
	api := newFitAPI(t)
	sender := api.client(t).Sender()
	ctx := context.Background()
	receipt, err := sender.Submit(ctx, submission(randomBytes(10), randomBytes(10)))
	if err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	s := api.subs[receipt.SubmissionID]
	api.mu.Unlock()
	tags := s.SubmittedTags
	tags.Data = tags.Metadata
	api.appendEvent(receipt.CaseID, api.signed(k.sig, destinationID, s, set.AcceptSubmission, set.AcceptPayload{AuthenticationTags: tags}))
	if _, err := sender.EventLog(ctx, receipt.CaseID); err != nil {
		t.Fatalf("event log: %v", err)
	}
	if _, err := sender.Status(ctx, receipt.CaseID, receipt.SubmissionID); !errors.Is(err, ErrTagMismatch) {
		t.Fatalf("status: %v, want ErrTagMismatch", err)
	}

	other := "7d0e7a3e-5a6b-4c55-9a47-3f1f8f0d1c2e"
	_, err = sender.StatusOf(ctx, Receipt{DestinationID: other, SubmissionID: receipt.SubmissionID, CaseID: receipt.CaseID, AuthenticationTags: receipt.AuthenticationTags})
	if !errors.Is(err, ErrUntrustedEvent) {
		t.Fatalf("status of a receipt for another destination: %v, want ErrUntrustedEvent", err)
	}
	if _, err := sender.Status(ctx, receipt.CaseID, other); !errors.Is(err, ErrNoEvents) {
		t.Fatalf("status of an unknown submission: %v, want ErrNoEvents", err)
	}
}

// TestTokenCaching: one token serves many requests, concurrent ones
// included, until shortly before it expires; a refused token is replaced.
func TestTokenCaching(t *testing.T) {
	api := newFitAPI(t)
	var mu sync.Mutex
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sender := api.client(t, Clock(clock)).Sender()
	ctx := context.Background()
	requests := func() int { api.mu.Lock(); defer api.mu.Unlock(); return api.tokenRequests }

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := sender.FetchDestination(ctx, destinationID)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := requests(); n != 1 {
		t.Fatalf("token requests after 8 concurrent calls = %d, want 1", n)
	}

	for _, step := range []struct {
		name    string
		advance time.Duration
		revoke  bool
		want    int
	}{
		{"within lifetime", 28 * time.Minute, false, 1},
		{"in the last minute", 90 * time.Second, false, 2},
		{"fresh token", time.Minute, false, 2},
		{"refused token", 0, true, 3},
	} {
		t.Run(step.name, func(t *testing.T) {
			advance(step.advance)
			if step.revoke {
				api.revokeTokens()
			}
			if _, err := sender.FetchDestination(ctx, destinationID); err != nil {
				t.Fatal(err)
			}
			if n := requests(); n != step.want {
				t.Fatalf("token requests = %d, want %d", n, step.want)
			}
		})
	}

	t.Run("wrong secret", func(t *testing.T) {
		c, err := New(api.srv.URL, Credentials(clientID, "wrong"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Sender().FetchDestination(ctx, destinationID)
		if !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("err = %v, want ErrToken naming invalid_client", err)
		}
	})
	t.Run("separate token url", func(t *testing.T) {
		cc := &ClientCredentials{TokenURL: api.srv.URL + "/token", ClientID: clientID, ClientSecret: clientSecret}
		tok, err := cc.Token(ctx)
		if err != nil || tok == "" {
			t.Fatalf("token = %q, %v", tok, err)
		}
		again, _ := cc.Token(ctx)
		if again != tok {
			t.Fatal("second call fetched a new token")
		}
	})
}

// TestRetries: overload answers are retried, up to the configured count.
func TestRetries(t *testing.T) {
	api := newFitAPI(t)
	sender := api.client(t).Sender()
	ctx := context.Background()

	api.locked(func() { api.unavailable = 2 })
	if _, err := sender.FetchDestination(ctx, destinationID); err != nil {
		t.Fatalf("two 503 answers then success: %v", err)
	}
	api.locked(func() { api.unavailable = 3 })
	_, err := sender.FetchDestination(ctx, destinationID)
	p, ok := problem.As(err)
	if !ok || p.Status != http.StatusServiceUnavailable {
		t.Fatalf("three 503 answers: %v, want the 503 problem", err)
	}

	// A create retried after a lost answer finds the same submission.
	sub := submission(randomBytes(10), randomBytes(10))
	ids, err := sub.check()
	if err != nil {
		t.Fatal(err)
	}
	sub.IdempotencyKey = "create-key-0001"
	first, err := sender.announce(ctx, sub, ids)
	if err != nil {
		t.Fatal(err)
	}
	second, err := sender.announce(ctx, sub, ids)
	if err != nil || second != first || api.createCount() != 1 {
		t.Fatalf("second create = %+v, %v; creates = %d", second, err, api.createCount())
	}
}

// TestSubmitUploadsAgain: a submit answered missing-attachments (an
// attachment lost since its upload, or uploaded twice at once) uploads
// them again and submits once more; a second such answer is the caller's.
func TestSubmitUploadsAgain(t *testing.T) {
	api := newFitAPI(t)
	sender := api.client(t, schemaOptions(t)...).Sender()
	ctx := context.Background()
	sub := submission(randomBytes(100), randomBytes(100))

	api.locked(func() { api.mixedUploads = 1 })
	if _, err := sender.Submit(ctx, sub); err != nil {
		t.Fatalf("submit after one missing-attachments answer: %v", err)
	}
	if n := api.uploadCount(); n != 2*len(sub.Attachments) {
		t.Errorf("%d uploads, want each of the %d attachments twice", n, len(sub.Attachments))
	}

	api.locked(func() { api.mixedUploads = 2 })
	_, err := sender.Submit(ctx, submission(randomBytes(100), randomBytes(100)))
	if p, ok := problem.As(err); !ok || p.Type != problem.TypeMissingAttachments {
		t.Fatalf("submit after two missing-attachments answers: %v, want that problem", err)
	}
}

// TestFetchBeforeTheCaseLog: a backbone that records events
// asynchronously may list a submission before its case has a log; Fetch
// waits for it a little and otherwise says there are no events yet.
func TestFetchBeforeTheCaseLog(t *testing.T) {
	api := newFitAPI(t)
	sender := api.client(t).Sender()
	receiver := api.client(t).Receiver()
	ring, err := NewKeyRing(testKeys(t).enc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	receipt, err := sender.Submit(ctx, submission(randomBytes(100), randomBytes(100)))
	if err != nil {
		t.Fatal(err)
	}

	api.locked(func() { api.unknownCases = 5 })
	rec, err := receiver.Fetch(ctx, receipt.SubmissionID, ring)
	if !errors.Is(err, ErrNoEvents) {
		t.Fatalf("fetch while the case has no log: %v, want ErrNoEvents", err)
	}
	if rec != nil {
		rec.Close()
	}

	api.locked(func() { api.unknownCases = 2 })
	rec, err = receiver.Fetch(ctx, receipt.SubmissionID, ring)
	if err != nil {
		t.Fatalf("fetch after two answers without a log: %v", err)
	}
	rec.Close()
}

func TestProblemAnswers(t *testing.T) {
	api := newFitAPI(t)
	sender := api.client(t).Sender()
	_, err := sender.FetchDestination(context.Background(), "7d0e7a3e-5a6b-4c55-9a47-3f1f8f0d1c2e")
	if !errors.Is(err, problem.DestinationNotFound("")) {
		t.Fatalf("err = %v, want destination-not-found", err)
	}
	p, _ := problem.As(err)
	if p.Field != "destinationId" {
		t.Errorf("problem field = %q", p.Field)
	}
}

// TestSubmitRefusals: nothing is announced for a submission that cannot succeed.
func TestSubmitRefusals(t *testing.T) {
	k := testKeys(t)
	for _, tc := range []struct {
		name  string
		alter func(a *fitAPI, s *Submission)
		want  error
		// schema marks rules only the metadata schema file carries.
		schema bool
	}{
		{"destination not a UUID", func(_ *fitAPI, s *Submission) { s.DestinationID = "dest-1" }, ErrInvalidSubmission, false},
		{"service not a URN", func(_ *fitAPI, s *Submission) { s.ServiceType.Identifier = "Bauantrag" }, ErrInvalidSubmission, false},
		{"service name missing", func(_ *fitAPI, s *Submission) { s.ServiceType.Name = "" }, ErrInvalidSubmission, false},
		{"data as xml without schema", func(_ *fitAPI, s *Submission) { s.DataMimeType = "application/xml" }, ErrDestination, false},
		{"data mime type", func(_ *fitAPI, s *Submission) { s.DataMimeType = "text/plain" }, ErrInvalidSubmission, false},
		{"region", func(_ *fitAPI, s *Submission) { s.Region = "08311" }, ErrInvalidSubmission, false},
		{"purpose data", func(_ *fitAPI, s *Submission) { s.Attachments[0].Purpose = "data" }, ErrInvalidSubmission, false},
		{"attachment id", func(_ *fitAPI, s *Submission) { s.Attachments[0].ID = "anlage-1" }, ErrInvalidSubmission, false},
		{"attachment twice", func(_ *fitAPI, s *Submission) {
			s.Attachments[0].ID = "0b799252-deb9-42b0-98d3-c50d24bbafe0"
			s.Attachments[1].ID = "0B799252-DEB9-42B0-98D3-C50D24BBAFE0"
		}, ErrInvalidSubmission, false},
		{"attachment content and bytes", func(_ *fitAPI, s *Submission) { s.Attachments[1].Content = strings.NewReader("x") }, ErrInvalidSubmission, false},
		{"attachment mime type", func(_ *fitAPI, s *Submission) { s.Attachments[0].MimeType = "pdf" }, ErrInvalidSubmission, false},
		{"callback over http", func(_ *fitAPI, s *Submission) {
			s.Callback = &Callback{URL: "http://portal.example.org/cb", Secret: strings.Repeat("s", 32)}
		}, ErrInvalidSubmission, false},
		{"callback secret short", func(_ *fitAPI, s *Submission) {
			s.Callback = &Callback{URL: "https://portal.example.org/cb", Secret: "short"}
		}, ErrInvalidSubmission, false},
		{"reserved metadata", func(_ *fitAPI, s *Submission) { s.ExtraMetadata["contentStructure"] = map[string]any{} }, ErrInvalidMetadata, false},
		{"metadata extra breaking the schema", func(_ *fitAPI, s *Submission) {
			s.ExtraMetadata["replyChannel"] = map[string]any{"eMail": map[string]any{}}
		}, ErrInvalidMetadata, true},
		{"service not offered", func(_ *fitAPI, s *Submission) {
			s.ServiceType.Identifier = "urn:de:fim:leika:leistung:99000000000000"
		}, ErrDestination, false},
		{"destination inactive", func(a *fitAPI, _ *Submission) { a.destination.Status = "inactive" }, ErrDestination, false},
		{"key breaking the rules", func(a *fitAPI, _ *Submission) {
			raw, _ := k.sig.PublicJSON()
			a.keys[k.enc.Public.KeyID] = raw
		}, jose.ErrKeyRule, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := schemaOptions(t)
			if tc.schema && opts == nil {
				t.Skip("needs the FIT-Connect metadata schema")
			}
			api := newFitAPI(t)
			sender := api.client(t, opts...).Sender()
			sub := submission(randomBytes(10), randomBytes(10))
			api.locked(func() { tc.alter(api, &sub) })
			_, err := sender.Submit(context.Background(), sub)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := api.createCount(); n != 0 {
				t.Fatalf("%d submissions announced", n)
			}
		})
	}
}

// TestSubmitWithoutData: everything may travel in attachments.
func TestSubmitWithoutData(t *testing.T) {
	api := newFitAPI(t)
	sender, receiver := api.client(t, schemaOptions(t)...).Sender(), api.client(t).Receiver()
	sub := submission(randomBytes(10), randomBytes(10))
	sub.Data = nil
	ctx := context.Background()
	receipt, err := sender.Submit(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if receipt.AuthenticationTags.Data != "" {
		t.Fatalf("data tag %q without data", receipt.AuthenticationTags.Data)
	}
	ring, _ := NewKeyRing(testKeys(t).enc)
	rec, err := receiver.Fetch(ctx, receipt.SubmissionID, ring)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	if rec.Data != nil || rec.Metadata.ContentStructure.Data != nil || len(rec.Attachments) != 2 {
		t.Fatalf("received %+v", rec)
	}
}

func TestNewOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		base string
		opts []Option
	}{
		{"relative base", "amtsbote.example.org", nil},
		{"base with query", "https://amtsbote.example.org/?x=1", nil},
		{"empty credentials", "https://amtsbote.example.org", []Option{Credentials("", "")}},
		{"bad token url", "https://amtsbote.example.org", []Option{TokenURL("/token")}},
		{"missing schema", "https://amtsbote.example.org", []Option{MetadataSchema(t.TempDir() + "/none.json")}},
		{"negative retries", "https://amtsbote.example.org", []Option{Retries(-1, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.base, tc.opts...); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	c, err := New("https://amtsbote.example.org/", TokenURL("https://auth.example.org/token"), Credentials("a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if c.base != "https://amtsbote.example.org" || c.tokens.(*ClientCredentials).TokenURL != "https://auth.example.org/token" {
		t.Fatalf("base %q, tokens %+v", c.base, c.tokens)
	}
}

func TestAttachmentReaderError(t *testing.T) {
	api := newFitAPI(t)
	sender := api.client(t).Sender()
	sub := submission(nil, randomBytes(10))
	sub.Attachments[0].Content = io.MultiReader(strings.NewReader("part"), errReader{})
	if _, err := sender.Submit(context.Background(), sub); !errors.Is(err, errBroken) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
}

var errBroken = errors.New("broken reader")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBroken }

// TestTokenWaitBounded shows that a call waiting for a token fetch waits
// only as long as its own context allows (a readiness probe beside a
// poller whose fetch hangs), and that the fetch goes on for the others
// when the call that started it gives up.
func TestTokenWaitBounded(t *testing.T) {
	release, stop := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select {
			case <-release:
			case <-stop:
				return
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"t","token_type":"Bearer","expires_in":1800}`)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // before srv.Close, which waits for the handler
	cc := &ClientCredentials{TokenURL: srv.URL, ClientID: "c", ClientSecret: "s"}

	within := func(what string, ctx context.Context) (string, error) {
		t.Helper()
		type answer struct {
			tok string
			err error
		}
		done := make(chan answer, 1)
		go func() { tok, err := cc.Token(ctx); done <- answer{tok, err} }()
		select {
		case a := <-done:
			return a.tok, a.err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer within 10s", what)
			return "", nil
		}
	}

	first, cancelFirst := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { _, err := cc.Token(first); firstDone <- err }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := within("a waiting call with a deadline", short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting call: %v, want its own deadline", err)
	}
	cancelFirst()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}

	close(release) // the fetch the first call started answers now
	if tok, err := within("a call after the fetch", context.Background()); err != nil || tok != "t" {
		t.Fatalf("token %q, %v, want t", tok, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d token requests, want the one the first call started", n)
	}
}

// TestTokenBusy: a token endpoint answering 503 or 429, or a proxy in
// front of it answering 502 or 504, is asked again, after its Retry-After
// when it gives one; a refused client is not.
func TestTokenBusy(t *testing.T) {
	var calls atomic.Int32
	busy := map[int32]int{1: http.StatusServiceUnavailable, 2: http.StatusTooManyRequests, 3: http.StatusBadGateway, 4: http.StatusGatewayTimeout}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.FormValue("client_secret") != "richtig" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		if code, ok := busy[n]; ok {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
			}
			http.Error(w, "busy", code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"t","token_type":"Bearer","expires_in":1800}`)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	cc := &ClientCredentials{TokenURL: srv.URL, ClientID: "c", ClientSecret: "richtig"}
	began := time.Now()
	tok, err := cc.Token(ctx)
	if err != nil || tok != "t" {
		t.Fatalf("token %q, %v; want t after four busy answers", tok, err)
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("%d token requests, want 5", n)
	}
	if waited := time.Since(began); waited < time.Second {
		t.Errorf("asked again after %s, before the Retry-After of 1s", waited)
	}

	calls.Store(10)
	wrong := &ClientCredentials{TokenURL: srv.URL, ClientID: "c", ClientSecret: "falsch"}
	if _, err := wrong.Token(ctx); !errors.Is(err, ErrToken) {
		t.Fatalf("wrong secret: %v, want ErrToken", err)
	}
	if n := calls.Load(); n != 11 {
		t.Fatalf("a refused client was asked %d times, want once", n-10)
	}
}
