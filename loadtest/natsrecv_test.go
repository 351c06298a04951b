package main

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/set"
)

func TestDecisionReadsTheBackOfficesEvents(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sid, cid := uuid.NewString(), uuid.NewString()
	token := func(uri string, payload any) string {
		t.Helper()
		c, err := set.New(uri, uuid.NewString(), sid, cid, payload, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := set.Sign(c, key, "k1")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tags := set.AuthenticationTags{Metadata: "AAAAAAAAAAAAAAAAAAAAAA", Data: "AAAAAAAAAAAAAAAAAAAAAA"}
	for _, tt := range []struct {
		name, token, sid, uri string
	}{
		{"accept", token(set.AcceptSubmission, set.AcceptPayload{AuthenticationTags: tags}), sid, set.AcceptSubmission},
		{"reject", token(set.RejectSubmission, set.RejectPayload{Problems: []set.Problem{{Type: "https://schema.fitko.de/fit-connect/events/problems/incorrect-authentication-tag", Title: "t", Detail: "d", Instance: "metadata"}}}), sid, set.RejectSubmission},
		{"Amtsbote's own event", token(set.SubmitSubmission, set.SubmitPayload{AuthenticationTags: tags}), "", ""},
		{"not a SET", "a.b.c", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if gotSID, gotURI := decision(tt.token); gotSID != tt.sid || gotURI != tt.uri {
				t.Errorf("decision = %q, %q; want %q, %q", gotSID, gotURI, tt.sid, tt.uri)
			}
		})
	}
}
