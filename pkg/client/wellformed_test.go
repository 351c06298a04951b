package client

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestWellFormed(t *testing.T) {
	for _, c := range []struct {
		data, mimeType string
		ok             bool
	}{
		{`{"antragsteller":"Erika Mustermann"}`, "application/json", true},
		{` [1, 2] `, "application/json", true},
		{`{"antragsteller": `, "application/json", false},
		{`<antrag/>`, "application/json", false},
		{`<?xml version="1.0"?><antrag><name>Erika</name></antrag>`, "application/xml", true},
		{"<antrag>\n  <name>Erika</name>\n</antrag>\n", "application/xml", true},
		{`<antrag><name>Erika</antrag>`, "application/xml", false},
		{`<antrag>`, "application/xml", false},
		{`<a/><b/>`, "application/xml", false},
		{`Text <antrag/>`, "application/xml", false},
		{`{"antragsteller":"Erika"}`, "application/xml", false},
		{``, "application/xml", false},
		{`beliebig`, "text/plain", true},
	} {
		err := wellFormed([]byte(c.data), c.mimeType)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrSyntax) {
			t.Errorf("wellFormed(%q, %s) = %v, want ok %v", c.data, c.mimeType, err, c.ok)
		}
	}
}

// Data that is not of its schema's media type is refused by Fetch, with
// the problem Reject posts: a Fachverfahren is never handed broken JSON.
func TestFetchRefusesDataThatDoesNotParse(t *testing.T) {
	api := newFitAPI(t)
	opts := schemaOptions(t)
	k := testKeys(t)
	ctx := context.Background()
	sub := submission(randomBytes(100), randomBytes(100))
	sub.Data = []byte(`{"antragsteller": `)
	receipt, err := api.client(t, opts...).Sender().Submit(ctx, sub)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	ring, err := NewKeyRing(k.enc)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := api.client(t, opts...).Receiver().Fetch(ctx, receipt.SubmissionID, ring)
	if rec != nil {
		defer rec.Close()
	}
	var check *CheckError
	if !errors.As(err, &check) || !errors.Is(err, ErrSyntax) || check.Part != "data" {
		t.Fatalf("fetch: %v, want a CheckError of the data wrapping ErrSyntax", err)
	}
	if p := check.Problem(); !strings.HasSuffix(p.Type, "/syntax-violation") || p.Instance != "data" {
		t.Errorf("problem %s at %s, want syntax-violation at data", p.Type, p.Instance)
	}
}
