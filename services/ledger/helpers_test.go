package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

const (
	issuer  = "https://amtsbote.test"
	service = "urn:de:fim:leika:leistung:99050012104000"
)

// newSubmission returns a submission in status to a fresh destination,
// with the times of its steps: nil times stay unset.
func newSubmission(status sealed.Status, created time.Time, submitted, routed, picked *time.Time) store.Submission {
	return store.Submission{
		ID:                   uuid.NewString(),
		CaseID:               uuid.NewString(),
		DestinationID:        uuid.NewString(),
		SenderClientID:       "portal",
		ServiceIdentifier:    service,
		Progress:             sealed.Progress{Status: status, SubmittedAt: submitted, PickedUpAt: picked},
		AnnouncedAttachments: []string{uuid.NewString(), uuid.NewString()},
		UploadedAttachments:  []string{},
		CreatedAt:            created,
		RoutedAt:             routed,
	}
}

func createSubmission(t *testing.T, st store.Store, s store.Submission) {
	t.Helper()
	if err := st.CreateSubmission(context.Background(), s); err != nil {
		t.Fatalf("create submission: %v", err)
	}
}

// sign returns a SET of event uri about s, issued by iss.
func sign(t *testing.T, uri, iss string, s store.Submission, payload any) (set.Claims, string) {
	t.Helper()
	c, err := set.New(uri, iss, s.ID, s.CaseID, payload, time.Now())
	if err != nil {
		t.Fatalf("new %s: %v", uri, err)
	}
	token, err := set.Sign(c, flowtest.Signer(t).Private, flowtest.Signer(t).Public.KeyID)
	if err != nil {
		t.Fatalf("sign %s: %v", uri, err)
	}
	return c, token
}

// publishEvent publishes data to the EVENTS subject of caseID as the
// gateway does, with the given CloudEvent type and Nats-Msg-Id.
func publishEvent(t *testing.T, b *bus.Bus, caseID, typ string, data []byte, msgID string) {
	t.Helper()
	subject, err := bus.EventsSubject(caseID)
	if err != nil {
		t.Fatal(err)
	}
	ev := event.New()
	ev.SetID(msgID)
	ev.SetSource(issuer)
	ev.SetType(typ)
	if err := ev.SetData("application/jose", data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, subject, ev, msgID); err != nil {
		t.Fatalf("publish event: %v", err)
	}
}

// events returns the recorded events of a case.
func events(t *testing.T, st store.Store, caseID string) []store.Event {
	t.Helper()
	list, _, err := st.Events(context.Background(), caseID, store.Page{})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	return list
}

func submissionOf(t *testing.T, st store.Store, id string) store.Submission {
	t.Helper()
	s, err := st.Submission(context.Background(), id)
	if err != nil {
		t.Fatalf("submission: %v", err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }
