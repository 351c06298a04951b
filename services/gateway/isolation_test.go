package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestIsolationMatrix tries every endpoint of the Submission API and the
// admin API with every kind of credential that must be refused, and shows
// each refusal: a token that is no valid token of this gateway is a 401,
// a valid one of another tenant a 403 or a 404 (as if absent), and
// neither changes anything.
func TestIsolationMatrix(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t))
			dA := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			dB := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			senderA := f.token("send:region:DE08")
			receiverA := f.token("subscribe:destination:" + dA.ID)

			delivered := f.prepare(t, senderA, dA, 1)
			f.submit(t, senderA, delivered).want(t, http.StatusAccepted)
			f.route(t, delivered.SubmissionID)
			f.call(t, http.MethodGet, "/v1/submissions/"+delivered.SubmissionID, receiverA, "", nil).want(t, http.StatusOK)
			open := f.prepare(t, senderA, dA, 1)
			f.waitEvents(t, senderA, delivered.CaseID, "create-submission", "submit-submission", "notify-submission")
			before := f.snapshot(t, delivered, open)

			own, kid := f.signer.Private, f.signer.Public.KeyID
			scopes := "send:region:DE08 subscribe:destination:" + dA.ID + " manage:destination:" + dA.ID + " amtsbote:admin"
			valid := func(edit func(map[string]any)) string {
				c := f.claims(scopes)
				edit(c)
				return mint(t, own, gojose.PS512, kid, "at+jwt", c)
			}
			unauthenticated := []struct{ name, token string }{
				{"no token", ""},
				{"expired", valid(func(c map[string]any) {
					c["iat"], c["nbf"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
				})},
				{"signed by another key", mint(t, keyPair(t, otherSignerKey).Private, gojose.PS512, kid, "at+jwt", f.claims(scopes))},
				{"another audience", valid(func(c map[string]any) { c["aud"] = "https://fit-connect.example.org" })},
				{"alg none", algNone(t, f.claims(scopes))},
			}
			foreign := []struct{ name, token string }{
				{"sender of another region", f.token("send:region:DE09")},
				{"receiver of another destination", f.token("subscribe:destination:" + dB.ID)},
				{"manager of another destination", f.token("manage:destination:" + dB.ID)},
			}

			accept := f.receiverSET(t, set.AcceptSubmission, delivered, set.AcceptPayload{AuthenticationTags: delivered.tags()}, nil)
			submitBody, err := json.Marshal(open.submitBody())
			must(t, err)
			createJSON, err := json.Marshal(createBody(dA))
			must(t, err)
			sub, att := "/v1/submissions/"+delivered.SubmissionID, delivered.order[0]
			endpoints := []struct {
				method, path, contentType, body string
				admin                           bool
			}{
				{method: http.MethodPost, path: "/v1/submissions", contentType: "application/json", body: string(createJSON)},
				{method: http.MethodPut, path: "/v1/submissions/" + open.SubmissionID + "/attachments/" + open.order[0], contentType: "application/jose", body: open.attachments[open.order[0]]},
				{method: http.MethodPut, path: "/v1/submissions/" + open.SubmissionID, contentType: "application/json", body: string(submitBody)},
				{method: http.MethodGet, path: "/v1/submissions?destinationId=" + dA.ID},
				{method: http.MethodGet, path: sub},
				{method: http.MethodGet, path: sub + "/attachments/" + att},
				{method: http.MethodGet, path: "/v1/cases/" + delivered.CaseID + "/events"},
				{method: http.MethodPost, path: "/v1/cases/" + delivered.CaseID + "/events", contentType: "application/jose", body: accept},
				{method: http.MethodGet, path: "/admin/v1/destinations", admin: true},
				{method: http.MethodGet, path: "/admin/v1/destinations/" + dA.ID, admin: true},
				{method: http.MethodPost, path: "/admin/v1/destinations/" + dA.ID + "/deactivate", admin: true},
				{method: http.MethodPost, path: "/admin/v1/clients", contentType: "application/json", body: `{"name":"intruder","scopes":["amtsbote:admin"]}`, admin: true},
				{method: http.MethodGet, path: "/admin/v1/audit", admin: true},
				{method: http.MethodGet, path: "/admin/v1/dead-letters", admin: true},
				{method: http.MethodGet, path: "/admin/v1/dead-letters/1", admin: true},
				{method: http.MethodPost, path: "/admin/v1/dead-letters/1/redrive", admin: true},
				{method: http.MethodPost, path: "/admin/v1/dead-letters/redrive", admin: true},
				{method: http.MethodDelete, path: "/admin/v1/dead-letters/1", admin: true},
				{method: http.MethodGet, path: "/admin/v1/overdue", admin: true},
			}
			for _, ep := range endpoints {
				for _, cred := range unauthenticated {
					t.Run(fmt.Sprintf("%s %s/%s", ep.method, ep.path, cred.name), func(t *testing.T) {
						r := f.try(t, ep.admin, ep.method, ep.path, cred.token, ep.contentType, ep.body)
						wantRefused(t, r, http.StatusUnauthorized)
						f.wantUnchangedFlow(t, before, delivered, open)
					})
				}
				for _, cred := range foreign {
					t.Run(fmt.Sprintf("%s %s/%s", ep.method, ep.path, cred.name), func(t *testing.T) {
						r := f.try(t, ep.admin, ep.method, ep.path, cred.token, ep.contentType, ep.body)
						want := []int{http.StatusForbidden, http.StatusNotFound}
						if ep.admin {
							want = []int{http.StatusForbidden}
						}
						wantRefused(t, r, want...)
						f.wantUnchangedFlow(t, before, delivered, open)
					})
				}
			}
		})
	}
}

// try sends a request, checked against FIT-Connect's spec unless it is
// one of the admin API's, which the spec does not know.
func (f *flowEnv) try(t *testing.T, admin bool, method, path, token, contentType, body string) reply {
	t.Helper()
	if !admin {
		return f.call(t, method, path, token, contentType, strings.NewReader(body))
	}
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
	must(t, err)
	defer resp.Body.Close()
	return reply{status: resp.StatusCode, header: resp.Header, body: readAll(t, resp)}
}

// wantRefused checks that r is a problem with one of statuses.
func wantRefused(t *testing.T, r reply, statuses ...int) {
	t.Helper()
	if !slices.Contains(statuses, r.status) {
		t.Fatalf("status %d, want one of %v: %s", r.status, statuses, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
}

// algNone returns an unsigned token with alg "none" carrying claims.
func algNone(t *testing.T, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		must(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]any{"alg": "none", "typ": "at+jwt"}) + "." + enc(claims) + "."
}

// TestScopeKindBeforeAnything: a token without the kind of scope an
// endpoint needs is refused with the same 403 whatever the request names,
// so that its answers tell nothing of which destinations and cases exist.
func TestScopeKindBeforeAnything(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	sub := f.prepare(t, sender, d, 0)
	missing := newUUID(t)

	creator := f.token("create:destination")
	receiver := f.token("subscribe:destination:" + d.ID)
	manager := f.token("manage:destination:" + d.ID)
	create := func(destinationID string) string {
		body := createBody(d)
		body["destinationId"] = destinationID
		b, err := json.Marshal(body)
		must(t, err)
		return string(b)
	}
	for _, c := range []struct {
		name, method, path, token, body string
	}{
		{"create, existing destination", http.MethodPost, "/v1/submissions", receiver, create(d.ID)},
		{"create, missing destination", http.MethodPost, "/v1/submissions", receiver, create(missing)},
		{"create, empty body", http.MethodPost, "/v1/submissions", manager, "{}"},
		{"create, creator", http.MethodPost, "/v1/submissions", creator, create(missing)},
		{"destination, existing", http.MethodGet, "/v1/destinations/" + d.ID, creator, ""},
		{"destination, missing", http.MethodGet, "/v1/destinations/" + missing, creator, ""},
		{"events, existing case", http.MethodGet, "/v1/cases/" + sub.CaseID + "/events", creator, ""},
		{"events, missing case", http.MethodGet, "/v1/cases/" + missing + "/events", creator, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			contentType := ""
			if c.body != "" {
				contentType = "application/json"
			}
			r := f.call(t, c.method, c.path, c.token, contentType, strings.NewReader(c.body))
			wantRefused(t, r, http.StatusForbidden)
		})
	}
	// The kinds that may read them still learn what exists.
	f.call(t, http.MethodGet, "/v1/destinations/"+missing, manager, "", nil).want(t, http.StatusNotFound)
	f.call(t, http.MethodGet, "/v1/cases/"+missing+"/events", receiver, "", nil).want(t, http.StatusNotFound)
}
