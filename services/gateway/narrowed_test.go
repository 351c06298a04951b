package gateway_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestNarrowedTokenReachesOnlyItsSubmissions: a token asked for less than
// its client was granted (one service, a smaller region; RFC 6749 3.3)
// uploads to, submits and reads the case of only the submissions it could
// have created, as FIT-Connect puts the narrowed scope on each of them.
func TestNarrowedTokenReachesOnlyItsSubmissions(t *testing.T) {
	f := newFlowEnv(t, flowtest.Backends()[0].Open(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	full := f.token("send:region:DE08")
	as := func(scope string) string {
		claims := f.claims(scope)
		id := f.tokenSubject(full)
		claims["sub"], claims["client_id"] = id, id
		claims["exp"] = f.clock.Now().Add(30 * time.Minute).Unix()
		return mint(t, f.signer.Private, gojose.PS512, f.signer.Public.KeyID, "at+jwt", claims)
	}
	otherService := as("send:region:DE08+send:service:" + serviceB)
	otherRegion := as("send:region:DE09")
	ownService := as("send:region:DE08311+send:service:" + serviceA)

	for _, region := range []string{"", "DE08311"} {
		t.Run(fmt.Sprintf("region %q", region), func(t *testing.T) {
			aid := newUUID(t)
			body := createBody(d, aid)
			if region != "" {
				body["region"] = region
			}
			s := sealedSubmission{dest: d, attachments: map[string]string{aid: seal(t, []byte("anlage"), d.EncryptionKID)}, order: []string{aid}}
			s.created = f.create(t, full, body)
			s.metadata = seal(t, []byte(`{"contentStructure":{"data":{"submissionSchema":{"schemaUri":"https://schema.fitko.de/fim/s00000096_1.0.schema.json","mimeType":"application/json"}}}}`), d.EncryptionKID)
			s.data = seal(t, []byte(`{"name":"Erika Mustermann"}`), d.EncryptionKID)

			for name, tok := range map[string]string{"another service": otherService, "another region": otherRegion} {
				f.upload(t, tok, s.SubmissionID, aid, s.attachments[aid]).problem(t, http.StatusForbidden, problem.TypeForbidden, "scope")
				f.submit(t, tok, s).problem(t, http.StatusForbidden, problem.TypeForbidden, "scope")
				f.call(t, http.MethodGet, "/v1/cases/"+s.CaseID+"/events", tok, "", nil).problem(t, http.StatusForbidden, problem.TypeForbidden, "scope")
				if t.Failed() {
					t.Fatalf("a token for %s reached the submission", name)
				}
			}
			f.upload(t, ownService, s.SubmissionID, aid, s.attachments[aid]).want(t, http.StatusNoContent)
			f.submit(t, ownService, s).want(t, http.StatusAccepted)
			f.call(t, http.MethodGet, "/v1/cases/"+s.CaseID+"/events", ownService, "", nil).want(t, http.StatusOK)
		})
	}
}
