package set_test

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/set"
)

func TestKnown(t *testing.T) {
	for _, uri := range []string{set.CreateSubmission, set.SubmitSubmission, set.NotifySubmission, set.ForwardSubmission,
		set.AcceptSubmission, set.RejectSubmission, set.DeleteSubmission} {
		if !set.Known(uri) || !strings.HasPrefix(uri, "https://schema.fitko.de/fit-connect/events/") {
			t.Errorf("%s not known", uri)
		}
	}
	for _, uri := range []string{"", set.EventBase, set.EventBase + "accept-reply", "https://example.org/accept-submission"} {
		if set.Known(uri) {
			t.Errorf("%q known", uri)
		}
	}
}

// TestSignMatchesTheEventLogPattern: every SET Sign makes matches the
// pattern of FIT-Connect's EventLog items, which like every OpenAPI
// pattern is not anchored.
func TestSignMatchesTheEventLogPattern(t *testing.T) {
	key := testKey(t)
	pattern := regexp.MustCompile(`\w+\.\w+\.\w+`)
	c, err := set.New(set.SubmitSubmission, backbone, submissionID, caseID, set.SubmitPayload{AuthenticationTags: tags()}, now)
	if err != nil {
		t.Fatal(err)
	}
	for range 64 {
		token, err := set.Sign(c, key, testKID)
		if err != nil {
			t.Fatal(err)
		}
		if !pattern.MatchString(token) {
			t.Fatalf("%.40s… does not match %s", token, pattern)
		}
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		name, event, issuer string
		payload             any
	}{
		{"create", set.CreateSubmission, backbone, nil},
		{"submit", set.SubmitSubmission, backbone, set.SubmitPayload{AuthenticationTags: tags()}},
		{"submit without data", set.SubmitSubmission, backbone, set.SubmitPayload{AuthenticationTags: set.AuthenticationTags{Metadata: tag(7)}}},
		{"notify", set.NotifySubmission, backbone, nil},
		{"forward", set.ForwardSubmission, destinationID, map[string]any{}},
		{"forward naming its target", set.ForwardSubmission, destinationID, set.ForwardPayload{ForwardedTo: &set.ForwardTarget{
			DestinationID: destinationID, SubmissionID: submissionID, CaseID: caseID,
		}}},
		{"accept", set.AcceptSubmission, destinationID, set.AcceptPayload{AuthenticationTags: tags()}},
		{"reject", set.RejectSubmission, destinationID, set.RejectPayload{Problems: []set.Problem{{
			Type: "https://schema.fitko.de/fit-connect/events/problems/missing-data", Title: "Fachdaten fehlen",
			Detail: "Die Einreichung enthält keine Fachdaten.", Instance: "data",
		}}}},
		{"delete", set.DeleteSubmission, backbone, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := set.New(tt.event, tt.issuer, submissionID, caseID, tt.payload, now)
			if err != nil {
				t.Fatal(err)
			}
			token, err := set.Sign(c, key, testKID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := verifier.Verify(token, &key.PublicKey)
			if err != nil {
				t.Fatalf("verify own token: %v", err)
			}
			if !reflect.DeepEqual(mustJSON(t, got), mustJSON(t, c)) {
				t.Fatalf("claims changed:\n%s\n%s", mustJSON(t, got), mustJSON(t, c))
			}
			if got.Schema != set.SchemaURI || !got.IssuedAt.Equal(now) || got.Issuer != tt.issuer {
				t.Fatalf("claims %+v", got)
			}
			uri, _, err := got.Event()
			if err != nil || uri != tt.event {
				t.Fatalf("event %q, %v", uri, err)
			}
			if sub, err := got.SubmissionID(); err != nil || sub != submissionID {
				t.Fatalf("submission %q, %v", sub, err)
			}
			if cs, err := got.CaseID(); err != nil || cs != caseID {
				t.Fatalf("case %q, %v", cs, err)
			}
			h, parsed, err := set.Parse(token)
			if err != nil || h != (set.Header{Alg: "PS512", Typ: "secevent+jwt", KID: testKID}) || parsed.JTI != c.JTI {
				t.Fatalf("parse: %+v %v", h, err)
			}
		})
	}
}

func TestTagsAndProblems(t *testing.T) {
	accept, err := set.New(set.AcceptSubmission, destinationID, submissionID, caseID, set.AcceptPayload{AuthenticationTags: tags()}, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := accept.Tags()
	if err != nil || !got.Equal(tags()) {
		t.Fatalf("tags %+v, %v", got, err)
	}
	if _, err := accept.Problems(); !errors.Is(err, set.ErrClaims) {
		t.Fatalf("problems of an accept event: %v", err)
	}
	problems := []set.Problem{{Type: "https://schema.fitko.de/fit-connect/events/problems/an-example", Instance: "metadata"}}
	reject, err := set.New(set.RejectSubmission, destinationID, submissionID, caseID, set.RejectPayload{Problems: problems}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := reject.Problems(); err != nil || !reflect.DeepEqual(got, problems) {
		t.Fatalf("problems %+v, %v", got, err)
	}
	if _, err := reject.Tags(); !errors.Is(err, set.ErrClaims) {
		t.Fatalf("tags of a reject event: %v", err)
	}
}

func TestAuthenticationTagsEqual(t *testing.T) {
	a := tags()
	tests := []struct {
		name string
		b    set.AuthenticationTags
		want bool
	}{
		{"same", tags(), true},
		{"other metadata", set.AuthenticationTags{Metadata: tag(9), Data: a.Data, Attachments: a.Attachments}, false},
		{"no data", set.AuthenticationTags{Metadata: a.Metadata, Attachments: a.Attachments}, false},
		{"attachment missing", set.AuthenticationTags{Metadata: a.Metadata, Data: a.Data}, false},
		{"attachment differs", set.AuthenticationTags{Metadata: a.Metadata, Data: a.Data, Attachments: map[string]string{attachmentID: tag(4)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Equal(tt.b); got != tt.want {
				t.Fatalf("Equal = %v", got)
			}
		})
	}
	nilMap := set.AuthenticationTags{Metadata: tag(1)}
	emptyMap := set.AuthenticationTags{Metadata: tag(1), Attachments: map[string]string{}}
	if !nilMap.Equal(emptyMap) {
		t.Fatal("nil and empty attachments differ")
	}
}

func TestNewRefusesBrokenEvents(t *testing.T) {
	tests := []struct {
		name, event, submission, cas string
		payload                      any
		field                        string
	}{
		{"unknown event", set.EventBase + "archive-submission", submissionID, caseID, nil, "events"},
		{"submission id not a UUID", set.CreateSubmission, "42", caseID, nil, "sub"},
		{"case id not a UUID", set.CreateSubmission, submissionID, "case-1", nil, "txn"},
		{"accept without tags", set.AcceptSubmission, submissionID, caseID, nil, "authenticationTags"},
		{"accept with empty tags", set.AcceptSubmission, submissionID, caseID, set.AcceptPayload{}, "authenticationTags.metadata"},
		{"reject without problems", set.RejectSubmission, submissionID, caseID, set.RejectPayload{}, "problems"},
		{"payload not an object", set.ForwardSubmission, submissionID, caseID, []string{"x"}, "events"},
		{"forward target not an object", set.ForwardSubmission, submissionID, caseID, map[string]any{"forwardedTo": "x"}, "forwardedTo"},
		{"forward target without case", set.ForwardSubmission, submissionID, caseID,
			map[string]any{"forwardedTo": map[string]string{"destinationId": destinationID, "submissionId": submissionID}}, "forwardedTo.caseId"},
		{"forward target with another member", set.ForwardSubmission, submissionID, caseID,
			map[string]any{"forwardedTo": map[string]string{"destinationId": destinationID, "submissionId": submissionID, "caseId": caseID, "x": "y"}}, "forwardedTo.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := set.New(tt.event, destinationID, tt.submission, tt.cas, tt.payload, now)
			if !errors.Is(err, set.ErrClaims) || ruleField(err) != tt.field {
				t.Fatalf("error %v, want a claim rule on %q", err, tt.field)
			}
		})
	}
}

func TestNewMakesFreshUUIDs(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		c, err := set.New(set.CreateSubmission, backbone, submissionID, caseID, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.JTI] || c.JTI[14] != '4' || !strings.ContainsRune("89ab", rune(c.JTI[19])) {
			t.Fatalf("jti %s repeated or not a version 4 UUID", c.JTI)
		}
		seen[c.JTI] = true
	}
}

func TestSignRefusesInvalidClaims(t *testing.T) {
	key := testKey(t)
	c, err := set.New(set.CreateSubmission, backbone, submissionID, caseID, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	bad := c
	bad.Events = map[string]json.RawMessage{set.CreateSubmission: json.RawMessage(`{}`), set.DeleteSubmission: json.RawMessage(`{}`)}
	if _, err := set.Sign(bad, key, testKID); !errors.Is(err, set.ErrClaims) || ruleField(err) != "events" {
		t.Fatalf("two events signed: %v", err)
	}
	if _, err := set.Sign(c, key, ""); err == nil {
		t.Fatal("signed without kid")
	}
	if _, err := set.Sign(c, nil, testKID); err == nil {
		t.Fatal("signed without key")
	}
}

// TestVerifyRules breaks one rule per token and checks the sentinel and field.
func TestVerifyRules(t *testing.T) {
	key, other := testKeys(t)
	validHeader := map[string]any{"alg": "PS512", "typ": "secevent+jwt", "kid": testKID}
	tests := []struct {
		name     string
		header   func(h map[string]any)
		claims   func(c map[string]any)
		token    func(valid string) string // replaces header and claims edits
		signer   *int                      // salt length, default 64
		wrongKey bool
		sentinel error // nil means valid
		field    string
	}{
		{name: "valid"},
		{name: "typ as full media type", header: func(h map[string]any) { h["typ"] = "application/secevent+jwt" }},
		{name: "typ in capitals", header: func(h map[string]any) { h["typ"] = "SECEVENT+JWT" }},
		{name: "no $schema", claims: func(c map[string]any) { delete(c, "$schema") }},
		{name: "$schema 1.2.2", claims: func(c map[string]any) {
			c["$schema"] = "https://schema.fitko.de/fit-connect/set-payload/1.2.2/set-payload.schema.json"
		}},
		{name: "iat within skew", claims: func(c map[string]any) { c["iat"] = now.Add(4 * time.Minute).Unix() }},
		{name: "unknown extra claim", claims: func(c map[string]any) { c["aud"] = "x" }},
		{name: "accept with extra payload member", claims: func(c map[string]any) { payload(c)["problems"] = []any{} }},

		{name: "two segments", token: func(v string) string { return v[:strings.LastIndexByte(v, '.')] }, sentinel: set.ErrMalformed, field: "token"},
		{name: "four segments", token: func(v string) string { return v + ".AAAA" }, sentinel: set.ErrMalformed, field: "token"},
		{name: "too long", token: func(v string) string { return v + strings.Repeat("A", set.MaxTokenLen) }, sentinel: set.ErrMalformed, field: "token"},
		{name: "padded signature", token: func(v string) string { return v + "==" }, sentinel: set.ErrMalformed, field: "signature"},
		{name: "header not base64url", token: func(v string) string { return "*" + v }, sentinel: set.ErrMalformed, field: "header"},
		{name: "payload not JSON", token: func(v string) string {
			p := strings.Split(v, ".")
			return p[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + p[2]
		}, sentinel: set.ErrMalformed, field: "claims"},
		{name: "header duplicate alg", token: func(string) string {
			return signRaw(t, key, []byte(`{"alg":"none","alg":"PS512","typ":"secevent+jwt","kid":"k"}`), mustJSON(t, claimsMap(t)), 64)
		}, sentinel: set.ErrMalformed, field: "header"},
		{name: "alg RS512", header: func(h map[string]any) { h["alg"] = "RS512" }, sentinel: set.ErrMalformed, field: "header.alg"},
		{name: "alg none", header: func(h map[string]any) { h["alg"] = "none" }, sentinel: set.ErrMalformed, field: "header.alg"},
		{name: "alg missing", header: func(h map[string]any) { delete(h, "alg") }, sentinel: set.ErrMalformed, field: "header.alg"},
		{name: "alg a number", header: func(h map[string]any) { h["alg"] = 512 }, sentinel: set.ErrMalformed, field: "header.alg"},
		{name: "typ JWT", header: func(h map[string]any) { h["typ"] = "JWT" }, sentinel: set.ErrMalformed, field: "header.typ"},
		{name: "typ missing", header: func(h map[string]any) { delete(h, "typ") }, sentinel: set.ErrMalformed, field: "header.typ"},
		{name: "kid missing", header: func(h map[string]any) { delete(h, "kid") }, sentinel: set.ErrMalformed, field: "header.kid"},
		{name: "crit", header: func(h map[string]any) { h["crit"] = []string{"exp"} }, sentinel: set.ErrMalformed, field: "header.crit"},

		{name: "wrong key", wrongKey: true, sentinel: set.ErrSignature, field: "signature"},
		{name: "salt of 32 bytes", signer: ptr(32), sentinel: set.ErrSignature, field: "signature"},
		{name: "tampered payload", token: func(v string) string {
			p := strings.Split(v, ".")
			forged := signRaw(t, key, []byte(`{"alg":"PS512","typ":"secevent+jwt","kid":"k"}`), []byte(`{}`), 64)
			return p[0] + "." + strings.Split(forged, ".")[1] + "." + p[2]
		}, sentinel: set.ErrSignature, field: "signature"},
		{name: "empty signature", token: func(v string) string { return v[:strings.LastIndexByte(v, '.')+1] }, sentinel: set.ErrSignature, field: "signature"},

		{name: "$schema of another schema", claims: func(c map[string]any) {
			c["$schema"] = "https://schema.fitko.de/fit-connect/set-payload/2.0.0/set-payload.schema.json"
		}, sentinel: set.ErrClaims, field: "$schema"},
		{name: "jti missing", claims: func(c map[string]any) { delete(c, "jti") }, sentinel: set.ErrClaims, field: "jti"},
		{name: "jti not a UUID", claims: func(c map[string]any) { c["jti"] = "token-1" }, sentinel: set.ErrClaims, field: "jti"},
		{name: "jti a number", claims: func(c map[string]any) { c["jti"] = 7 }, sentinel: set.ErrMalformed, field: "jti"},
		{name: "iss missing", claims: func(c map[string]any) { delete(c, "iss") }, sentinel: set.ErrClaims, field: "iss"},
		{name: "iat missing", claims: func(c map[string]any) { delete(c, "iat") }, sentinel: set.ErrClaims, field: "iat"},
		{name: "iat before 2020", claims: func(c map[string]any) { c["iat"] = 1577833199 }, sentinel: set.ErrClaims, field: "iat"},
		{name: "iat in the future", claims: func(c map[string]any) { c["iat"] = now.Add(6 * time.Minute).Unix() }, sentinel: set.ErrClaims, field: "iat"},
		{name: "iat fractional", claims: func(c map[string]any) { c["iat"] = 1767225600.5 }, sentinel: set.ErrMalformed, field: "iat"},
		{name: "iat a whole number written with a fraction part", claims: func(c map[string]any) { c["iat"] = json.Number(strconv.FormatInt(now.Unix(), 10) + ".0") }, sentinel: set.ErrMalformed, field: "iat"},
		{name: "iat a string", claims: func(c map[string]any) { c["iat"] = "1767225600" }, sentinel: set.ErrMalformed, field: "iat"},
		{name: "iat beyond year 9999", claims: func(c map[string]any) { c["iat"] = int64(1) << 62 }, sentinel: set.ErrMalformed, field: "iat"},
		{name: "sub without prefix", claims: func(c map[string]any) { c["sub"] = submissionID }, sentinel: set.ErrClaims, field: "sub"},
		{name: "sub reply", claims: func(c map[string]any) { c["sub"] = "reply:" + submissionID }, sentinel: set.ErrClaims, field: "sub"},
		{name: "sub not a UUID", claims: func(c map[string]any) { c["sub"] = "submission:1" }, sentinel: set.ErrClaims, field: "sub"},
		{name: "txn missing", claims: func(c map[string]any) { delete(c, "txn") }, sentinel: set.ErrClaims, field: "txn"},
		{name: "txn of a submission", claims: func(c map[string]any) { c["txn"] = "submission:" + caseID }, sentinel: set.ErrClaims, field: "txn"},
		{name: "events missing", claims: func(c map[string]any) { delete(c, "events") }, sentinel: set.ErrClaims, field: "events"},
		{name: "events an array", claims: func(c map[string]any) { c["events"] = []string{set.AcceptSubmission} }, sentinel: set.ErrMalformed, field: "events"},
		{name: "no event", claims: func(c map[string]any) { c["events"] = map[string]any{} }, sentinel: set.ErrClaims, field: "events"},
		{name: "two events", claims: func(c map[string]any) {
			c["events"].(map[string]any)[set.DeleteSubmission] = map[string]any{}
		}, sentinel: set.ErrClaims, field: "events"},
		{name: "unknown event", claims: func(c map[string]any) {
			c["events"] = map[string]any{set.EventBase + "accept-reply": map[string]any{}}
		}, sentinel: set.ErrClaims, field: "events"},
		{name: "payload null", claims: func(c map[string]any) { c["events"] = map[string]any{set.AcceptSubmission: nil} }, sentinel: set.ErrClaims, field: "events"},
		{name: "accept without tags", claims: func(c map[string]any) { delete(payload(c), "authenticationTags") }, sentinel: set.ErrClaims, field: "authenticationTags"},
		{name: "tags without metadata", claims: func(c map[string]any) { delete(tagsOf(c), "metadata") }, sentinel: set.ErrClaims, field: "authenticationTags.metadata"},
		{name: "metadata tag too short", claims: func(c map[string]any) { tagsOf(c)["metadata"] = "AAAA" }, sentinel: set.ErrClaims, field: "authenticationTags.metadata"},
		{name: "metadata tag padded", claims: func(c map[string]any) { tagsOf(c)["metadata"] = tag(1) + "==" }, sentinel: set.ErrClaims, field: "authenticationTags.metadata"},
		{name: "data tag a number", claims: func(c map[string]any) { tagsOf(c)["data"] = 1 }, sentinel: set.ErrClaims, field: "authenticationTags.data"},
		{name: "attachment id not a UUID", claims: func(c map[string]any) {
			tagsOf(c)["attachments"] = map[string]any{"attachment-1": tag(3)}
		}, sentinel: set.ErrClaims, field: "authenticationTags.attachments"},
		{name: "attachment tag wrong", claims: func(c map[string]any) {
			tagsOf(c)["attachments"] = map[string]any{attachmentID: "x"}
		}, sentinel: set.ErrClaims, field: "authenticationTags.attachments." + attachmentID},
		{name: "reject without problems", claims: func(c map[string]any) {
			c["events"] = map[string]any{set.RejectSubmission: map[string]any{}}
		}, sentinel: set.ErrClaims, field: "problems"},
		{name: "reject with no problem", claims: func(c map[string]any) {
			c["events"] = map[string]any{set.RejectSubmission: map[string]any{"problems": []any{}}}
		}, sentinel: set.ErrClaims, field: "problems"},
		{name: "problem without type", claims: func(c map[string]any) {
			c["events"] = map[string]any{set.RejectSubmission: map[string]any{"problems": []any{map[string]any{"instance": "metadata"}}}}
		}, sentinel: set.ErrClaims, field: "problems[0].type"},
		{name: "problem without instance", claims: func(c map[string]any) {
			c["events"] = map[string]any{set.RejectSubmission: map[string]any{"problems": []any{
				map[string]any{"type": "https://example.org/p", "instance": "data"},
				map[string]any{"type": "https://example.org/p", "title": "t"},
			}}}
		}, sentinel: set.ErrClaims, field: "problems[1].instance"},
		{name: "problem title a number", claims: func(c map[string]any) {
			c["events"] = map[string]any{set.RejectSubmission: map[string]any{"problems": []any{
				map[string]any{"type": "https://example.org/p", "instance": "data", "title": 5},
			}}}
		}, sentinel: set.ErrClaims, field: "problems[0].title"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]any{}
			for k, v := range validHeader {
				h[k] = v
			}
			c := claimsMap(t)
			if tt.header != nil {
				tt.header(h)
			}
			if tt.claims != nil {
				tt.claims(c)
			}
			signer, salt := key, 64
			if tt.wrongKey {
				signer = other
			}
			if tt.signer != nil {
				salt = *tt.signer
			}
			token := signRaw(t, signer, mustJSON(t, h), mustJSON(t, c), salt)
			if tt.token != nil {
				token = tt.token(token)
			}
			got, err := verifier.Verify(token, &key.PublicKey)
			if tt.sentinel == nil {
				if err != nil {
					t.Fatalf("valid token refused: %v", err)
				}
				if got.JTI == "" {
					t.Fatal("no claims returned")
				}
				return
			}
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("error %v, want %v", err, tt.sentinel)
			}
			if f := ruleField(err); f != tt.field {
				t.Fatalf("field %q, want %q (%v)", f, tt.field, err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func payload(c map[string]any) map[string]any {
	return c["events"].(map[string]any)[set.AcceptSubmission].(map[string]any)
}

func tagsOf(c map[string]any) map[string]any {
	return payload(c)["authenticationTags"].(map[string]any)
}

func TestVerifierSkew(t *testing.T) {
	key := testKey(t)
	c, err := set.New(set.CreateSubmission, backbone, submissionID, caseID, nil, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	token, err := set.Sign(c, key, testKID)
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	tests := []struct {
		name string
		skew time.Duration
		ok   bool
	}{
		{"default tolerates a minute", 0, true},
		{"two minutes tolerate a minute", 2 * time.Minute, true},
		{"thirty seconds do not", 30 * time.Second, false},
		{"negative means none", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := set.Verifier{Now: clock, Skew: tt.skew}.Verify(token, &key.PublicKey)
			if (err == nil) != tt.ok {
				t.Fatalf("error %v", err)
			}
			if err != nil && (!errors.Is(err, set.ErrClaims) || ruleField(err) != "iat") {
				t.Fatalf("error %v, want a claim rule on iat", err)
			}
		})
	}
	// The package-level Verify uses the real clock; iat a minute ahead of the test clock is in the past.
	if _, err := set.Verify(token, &key.PublicKey); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestParseReadsUnverifiedTokens(t *testing.T) {
	key := testKey(t)
	token := signRaw(t, key, []byte(`{"alg":"PS512","typ":"secevent+jwt","kid":"dest-sig-01"}`), mustJSON(t, claimsMap(t)), 64)
	h, c, err := set.Parse(token)
	if err != nil {
		t.Fatal(err)
	}
	if h.KID != "dest-sig-01" || c.Issuer != destinationID {
		t.Fatalf("kid %q issuer %q", h.KID, c.Issuer)
	}
	// Parse does not apply claim rules.
	m := claimsMap(t)
	m["jti"] = "not-a-uuid"
	if _, c, err := set.Parse(signRaw(t, key, []byte(`{"alg":"none"}`), mustJSON(t, m), 64)); err != nil || c.JTI != "not-a-uuid" {
		t.Fatalf("parse: %v", err)
	}
	if _, _, err := set.Parse("a.b"); !errors.Is(err, set.ErrMalformed) {
		t.Fatalf("two segments: %v", err)
	}
}

func TestClaimsHelpersRefuseBrokenClaims(t *testing.T) {
	c := set.Claims{Subject: "submission:x", Txn: "case:" + caseID}
	if _, err := c.SubmissionID(); !errors.Is(err, set.ErrClaims) || ruleField(err) != "sub" {
		t.Fatalf("SubmissionID: %v", err)
	}
	if id, err := c.CaseID(); err != nil || id != caseID {
		t.Fatalf("CaseID: %q %v", id, err)
	}
	if _, _, err := c.Event(); !errors.Is(err, set.ErrClaims) || ruleField(err) != "events" {
		t.Fatalf("Event without events: %v", err)
	}
}

// TestClaimsHelpersAnswerLowerCase proves that ids written in upper case,
// as FIT-Connect's own example SETs write them, name what their lower-case
// form names.
func TestClaimsHelpersAnswerLowerCase(t *testing.T) {
	c := set.Claims{Subject: "submission:" + strings.ToUpper(submissionID), Txn: "case:" + strings.ToUpper(caseID)}
	if id, err := c.SubmissionID(); err != nil || id != submissionID {
		t.Fatalf("SubmissionID: %q %v, want %q", id, err, submissionID)
	}
	if id, err := c.CaseID(); err != nil || id != caseID {
		t.Fatalf("CaseID: %q %v, want %q", id, err, caseID)
	}
}

// TestInteroperatesWithGoJOSE checks PS512 against an independent JOSE
// implementation in both directions.
func TestInteroperatesWithGoJOSE(t *testing.T) {
	key := testKey(t)
	c, err := set.New(set.SubmitSubmission, backbone, submissionID, caseID, set.SubmitPayload{AuthenticationTags: tags()}, now)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := set.Sign(c, key, testKID)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := gojose.ParseSigned(ours, []gojose.SignatureAlgorithm{gojose.PS512})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(&key.PublicKey); err != nil {
		t.Fatalf("go-jose refuses our signature: %v", err)
	}

	signer, err := gojose.NewSigner(gojose.SigningKey{Algorithm: gojose.PS512, Key: key},
		(&gojose.SignerOptions{}).WithType(set.Typ).WithHeader("kid", testKID))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(mustJSON(t, c))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	got, err := verifier.Verify(theirs, &key.PublicKey)
	if err != nil {
		t.Fatalf("we refuse go-jose's signature: %v", err)
	}
	if got.JTI != c.JTI {
		t.Fatalf("jti %q", got.JTI)
	}
}

// BenchmarkSignParallel measures PS512 signing with RSA-4096, the cost of
// every event the backbone issues.
func BenchmarkSignParallel(b *testing.B) {
	key := testKey(b)
	c, err := set.New(set.SubmitSubmission, backbone, submissionID, caseID, set.SubmitPayload{AuthenticationTags: tags()}, now)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := set.Sign(c, key, testKID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// acceptToken returns an accept-submission SET signed with the test key.
func acceptToken(tb testing.TB) (string, *rsa.PrivateKey) {
	key := testKey(tb)
	c, err := set.New(set.AcceptSubmission, destinationID, submissionID, caseID, set.AcceptPayload{AuthenticationTags: tags()}, now)
	if err != nil {
		tb.Fatal(err)
	}
	token, err := set.Sign(c, key, testKID)
	if err != nil {
		tb.Fatal(err)
	}
	return token, key
}

// BenchmarkVerify measures verification, which the gateway does for every received event.
func BenchmarkVerify(b *testing.B) {
	token, key := acceptToken(b)
	for b.Loop() {
		if _, err := verifier.Verify(token, &key.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse measures reading a SET without its signature, which the
// ledger and delivery do for every event they consume.
func BenchmarkParse(b *testing.B) {
	token, _ := acceptToken(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := set.Parse(token); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckNew: a receiver's new reject names its problems by absolute
// URIs; Verify alone, which reads recorded events too, does not ask it.
func TestCheckNew(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		typ   string
		field string
	}{
		{"https://schema.fitko.de/fit-connect/events/problems/missing-data", ""},
		{"urn:example:problem", ""},
		{"oops", "problems[0].type"},
		{"/relative/path", "problems[0].type"},
	} {
		c, err := set.New(set.RejectSubmission, destinationID, submissionID, caseID,
			set.RejectPayload{Problems: []set.Problem{{Type: tt.typ, Instance: "data"}}}, now)
		if err != nil {
			t.Fatalf("%s: %v", tt.typ, err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", tt.typ, err)
		}
		err = c.CheckNew()
		if got := ruleField(err); got != tt.field || (tt.field != "" && !errors.Is(err, set.ErrClaims)) {
			t.Errorf("%s: CheckNew = %v, want field %q", tt.typ, err, tt.field)
		}
	}
}
