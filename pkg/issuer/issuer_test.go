package issuer_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/issuer"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/set"
)

const url = "https://amtsbote.example"

func TestNewChecksConfig(t *testing.T) {
	b, _ := bustest.Bus(t)
	key := flowtest.Signer(t)
	tests := []struct {
		name   string
		change func(*jose.KeyPair, *string)
	}{
		{"no key", func(k *jose.KeyPair, _ *string) { k.Private = nil }},
		{"no kid", func(k *jose.KeyPair, _ *string) { k.Public.KeyID = "" }},
		{"encryption key", func(k *jose.KeyPair, _ *string) { k.Purpose = jose.Encryption }},
		{"no url", func(_ *jose.KeyPair, u *string) { *u = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, u := key, url
			tc.change(&k, &u)
			if _, err := issuer.New(b, k, u, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := issuer.New(nil, key, url, nil); err == nil {
		t.Fatal("accepted no bus")
	}
}

func TestIssueOnce(t *testing.T) {
	b, _ := bustest.Bus(t)
	i := flowtest.Issuer(t, b, url)
	ctx := context.Background()
	sid, cid := uuid.NewString(), uuid.NewString()

	// Several issuers at once, and one later: one event in the case.
	var wg sync.WaitGroup
	seqs := make([]uint64, 4)
	for n := range seqs {
		wg.Go(func() {
			p, err := i.Issue(ctx, set.NotifySubmission, sid, cid, nil)
			if err != nil {
				t.Errorf("issue: %v", err)
				return
			}
			seqs[n] = p.Seq
		})
	}
	wg.Wait()
	later, err := i.Issue(ctx, set.NotifySubmission, sid, cid, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := b.CaseEvents(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events in the case, want 1", len(evs))
	}
	for _, s := range append(seqs, later.Seq) {
		if s != evs[0].Seq {
			t.Errorf("issued at %d, the event stands at %d", s, evs[0].Seq)
		}
	}
	if later.Token != evs[0].Token {
		t.Error("a later issue returned another token than the one published")
	}
	c, err := set.Verify(evs[0].Token, &flowtest.Signer(t).Private.PublicKey)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.JTI != flowtest.JTI(t, sid, set.NotifySubmission) || c.Issuer != url {
		t.Errorf("jti %s iss %s, want the derived jti and %s", c.JTI, c.Issuer, url)
	}
}

func TestEnqueueOnce(t *testing.T) {
	b, _ := bustest.Bus(t)
	i := flowtest.Issuer(t, b, url)
	ctx := context.Background()
	sid, cid := uuid.NewString(), uuid.NewString()
	for range 2 {
		if err := i.Enqueue(ctx, set.CreateSubmission, sid, cid, nil); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := b.Outbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Claims.JTI != flowtest.JTI(t, sid, set.CreateSubmission) {
		t.Fatalf("outbox %+v, want the one create-submission", entries)
	}
}

// TestPublishKeepsOrder: a submit-submission whose create-submission waits
// in the outbox is not published before it; one whose create-submission
// is in the case, or is in no outbox, is.
func TestPublishKeepsOrder(t *testing.T) {
	b, _ := bustest.Bus(t)
	i := flowtest.Issuer(t, b, url)
	ctx := context.Background()
	tags := set.SubmitPayload{AuthenticationTags: set.AuthenticationTags{Metadata: "AAECAwQFBgcICQoLDA0ODw"}}
	sid, cid := uuid.NewString(), uuid.NewString()
	if err := i.Enqueue(ctx, set.CreateSubmission, sid, cid, nil); err != nil {
		t.Fatal(err)
	}
	submit, err := i.Claims(set.SubmitSubmission, sid, cid, tags)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.Publish(ctx, submit); !errors.Is(err, issuer.ErrEarlierPending) {
		t.Fatalf("submit before its create: %v, want ErrEarlierPending", err)
	}
	if evs, err := b.CaseEvents(ctx, cid); err != nil || len(evs) != 0 {
		t.Fatalf("case holds %d events (%v), want none", len(evs), err)
	}
	create, err := i.Claims(set.CreateSubmission, sid, cid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.Publish(ctx, create); err != nil {
		t.Fatal(err)
	}
	// The create is published but still in the outbox, as between a
	// signer's publish and its delete.
	if _, err := i.Publish(ctx, submit); err != nil {
		t.Fatalf("submit after its create: %v", err)
	}
	// A reject waits for the submit as the submit for the create.
	sid, cid = uuid.NewString(), uuid.NewString()
	if err := i.Enqueue(ctx, set.SubmitSubmission, sid, cid, tags); err != nil {
		t.Fatal(err)
	}
	reject := set.RejectPayload{Problems: []set.Problem{{Type: "https://schema.fitko.de/fit-connect/events/problems/missing-route", Instance: "submission"}}}
	if _, err := i.Issue(ctx, set.RejectSubmission, sid, cid, reject); !errors.Is(err, issuer.ErrEarlierPending) {
		t.Fatalf("reject before its submit: %v, want ErrEarlierPending", err)
	}
	if _, err := i.Issue(ctx, set.SubmitSubmission, sid, cid, tags); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Issue(ctx, set.RejectSubmission, sid, cid, reject); err != nil {
		t.Fatalf("reject after its submit: %v", err)
	}
	// Without a create in the outbox nothing waits.
	other, err := i.Claims(set.SubmitSubmission, uuid.NewString(), uuid.NewString(), tags)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.Publish(ctx, other); err != nil {
		t.Fatalf("submit without a create in the outbox: %v", err)
	}
}
