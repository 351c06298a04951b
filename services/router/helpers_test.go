package router_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

const (
	issuer      = "https://amtsbote.test"
	service     = "urn:de:fim:leika:leistung:99050012104000"
	leikaKey    = "99050012104000"
	gemeinde    = "083110000000"
	traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)

// destination returns an active destination offering service in DE08311,
// filed under a Kreis-level home region.
func destination() store.Destination {
	return store.Destination{
		ID:     uuid.NewString(),
		Status: store.StatusActive,
		Contact: store.ContactInformation{
			LegalName: "Stadt Freiburg", Address: "Rathausplatz 2, 79098 Freiburg", Phone: "+49 761 2010", Email: "post@freiburg.example",
		},
		Services:         []store.Service{{Identifier: service, Regions: []string{"DE08311"}}},
		EncryptionKID:    "enc-key-0001",
		MetadataVersions: []string{"1.0.0"},
		HomeRegion:       "08311",
	}
}

func createDestination(t *testing.T, st store.Store, d store.Destination) {
	t.Helper()
	if err := st.CreateDestination(context.Background(), "test", d, nil); err != nil {
		t.Fatalf("create destination: %v", err)
	}
}

// submission returns a sealed submission to destinationID from DE083110000000.
func submission(destinationID string) sealed.Submission {
	return sealed.Submission{
		SubmissionID:  uuid.NewString(),
		CaseID:        uuid.NewString(),
		DestinationID: destinationID,
		Service:       service,
		Region:        "DE" + gemeinde,
		ARS:           gemeinde,
		Attachments:   []string{},
		Payload:       &sealed.Payload{EncryptedMetadata: "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a.b.c.d", EncryptedData: "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.e.f.g.h"},
	}
}

// submit publishes s to INGRESS as the gateway does, with msgID as
// Nats-Msg-Id (the submission id unless given).
func submit(t *testing.T, b *bus.Bus, s sealed.Submission, msgID ...string) {
	t.Helper()
	body, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	publishIngress(t, b, sealed.TypeSubmitted, body, s.SubmissionID, msgID...)
}

func publishIngress(t *testing.T, b *bus.Bus, typ string, body []byte, id string, msgID ...string) {
	t.Helper()
	subject, err := bus.IngressSubject(gemeinde, leikaKey)
	if err != nil {
		t.Fatal(err)
	}
	ev := event.New()
	ev.SetID(id)
	ev.SetSource(issuer)
	ev.SetType(typ)
	ev.SetExtension(bus.ExtensionTraceparent, traceparent)
	if err := ev.SetData("application/json", body); err != nil {
		t.Fatal(err)
	}
	mid := id
	if len(msgID) > 0 {
		mid = msgID[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, subject, ev, mid); err != nil {
		t.Fatalf("publish to ingress: %v", err)
	}
}
