package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestCaseEventBadInput proves each refusal of a receiver's event: the
// right status, a problem naming the claim, and nothing recorded,
// published or changed in the submission's status.
func TestCaseEventBadInput(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t))
			d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			sender := f.token("send:region:DE08")
			receiver := f.token("subscribe:destination:" + d.ID)
			delivered := func(n int) sealedSubmission {
				s := f.prepare(t, sender, d, n)
				f.submit(t, sender, s).want(t, http.StatusAccepted)
				f.route(t, s.SubmissionID)
				f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil).want(t, http.StatusOK)
				return s
			}
			s := delivered(1)
			other := delivered(0)
			rejected := delivered(0)
			problems := set.RejectPayload{Problems: []set.Problem{{
				Type: "https://schema.fitko.de/fit-connect/events/problems/invalid-data", Title: "Fachdaten ungültig",
				Detail: "Das Feld name fehlt.", Instance: "data",
			}}}
			reject := f.receiverSET(t, set.RejectSubmission, rejected, problems, nil)
			f.postEvent(t, receiver, rejected.CaseID, reject).want(t, http.StatusNoContent)
			incomplete := f.prepare(t, sender, d, 0)
			unfetched := f.prepare(t, sender, d, 0)
			f.submit(t, sender, unfetched).want(t, http.StatusAccepted)
			f.route(t, unfetched.SubmissionID)
			elsewhere := f.createDestination(newUUID(t), store.StatusActive, "DE08315")
			unsubscribed := f.prepare(t, sender, elsewhere, 0)
			f.submit(t, sender, unsubscribed).want(t, http.StatusAccepted)
			f.route(t, unsubscribed.SubmissionID)
			unsent := f.prepare(t, sender, elsewhere, 0)
			f.waitEvents(t, sender, rejected.CaseID, "create-submission", "submit-submission", "notify-submission", "reject-submission")
			before := f.snapshot(t, s, other, rejected, incomplete, unfetched)

			tags := s.tags()
			accept := set.AcceptPayload{AuthenticationTags: tags}
			wrongMeta := accept
			wrongMeta.AuthenticationTags.Metadata = tags.Data
			wrongAttachment := set.AcceptPayload{AuthenticationTags: set.AuthenticationTags{
				Metadata: tags.Metadata, Data: tags.Data, Attachments: map[string]string{s.order[0]: tags.Metadata},
			}}
			_, rejectClaims, err := set.Parse(reject)
			must(t, err)
			impostor := keyPair(t, otherSignerKey).Private
			tests := []struct {
				name       string
				caseID     string
				ct         string
				token      string
				status     int
				typ, field string
			}{
				{"not a JWS", s.CaseID, "", "kein.token", 400, problem.TypeInvalidEvent, "token"},
				{"wrong content type", s.CaseID, "application/json", f.receiverSET(t, set.AcceptSubmission, s, accept, nil), 415, problem.TypeUnsupportedMediaType, "Content-Type"},
				{"bad signature", s.CaseID, "", signSET(t, set.AcceptSubmission, s, accept, nil, impostor, d.SigningKID), 422, problem.TypeInvalidEvent, "signature"},
				{"wrong issuer", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.Issuer = other.dest.ID + "x" }), 422, problem.TypeInvalidEvent, "iss"},
				{"issued by Amtsbote", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.Issuer = f.srv.URL }), 422, problem.TypeInvalidEvent, "iss"},
				{"a problem type that is no URI", s.CaseID, "", f.receiverSET(t, set.RejectSubmission, s, set.RejectPayload{Problems: []set.Problem{{Type: "oops", Instance: "data"}}}, nil), 422, problem.TypeInvalidEvent, "problems[0].type"},
				{"subject of another case", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.Subject = "submission:" + other.SubmissionID }), 422, problem.TypeInvalidEvent, "sub"},
				{"unknown subject", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.Subject = "submission:" + newUUID(t) }), 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"subject of another destination", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.Subject = "submission:" + unsubscribed.SubmissionID }), 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"txn of another case", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.Txn = "case:" + other.CaseID }), 422, problem.TypeInvalidEvent, "txn"},
				{"posted to another case", other.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, nil), 422, problem.TypeInvalidEvent, "txn"},
				{"metadata tag differs", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, wrongMeta, nil), 422, problem.TypeInvalidEvent, "authenticationTags.metadata"},
				{"attachment listed twice", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, set.AcceptPayload{AuthenticationTags: set.AuthenticationTags{
					Metadata: tags.Metadata, Data: tags.Data, Attachments: map[string]string{s.order[0]: tags.Attachments[s.order[0]], strings.ToUpper(s.order[0]): tags.Attachments[s.order[0]]},
				}}, nil), 422, problem.TypeInvalidEvent, "authenticationTags.attachments." + s.order[0]},
				{"attachment tag differs", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, wrongAttachment, nil), 422, problem.TypeInvalidEvent, "authenticationTags.attachments." + s.order[0]},
				{"unknown kid", s.CaseID, "", signSET(t, set.AcceptSubmission, s, accept, nil, keyPair(t, sigKey1).Private, "unknown-kid-1"), 422, problem.TypeInvalidEvent, "header.kid"},
				{"encryption kid", s.CaseID, "", signSET(t, set.AcceptSubmission, s, accept, nil, keyPair(t, sigKey1).Private, d.EncryptionKID), 422, problem.TypeInvalidEvent, "header.kid"},
				{"event only Amtsbote sends", s.CaseID, "", f.receiverSET(t, set.SubmitSubmission, s, set.SubmitPayload{AuthenticationTags: tags}, nil), 422, problem.TypeInvalidEvent, "events"},
				{"issued in the future", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.IssuedAt = time.Now().Add(time.Hour).Truncate(time.Second) }), 422, problem.TypeInvalidEvent, "iat"},
				{"accept after reject", rejected.CaseID, "", f.receiverSET(t, set.AcceptSubmission, rejected, set.AcceptPayload{AuthenticationTags: rejected.tags()}, nil), 409, problem.TypeInvalidTransition, "events"},
				{"reject twice", rejected.CaseID, "", f.receiverSET(t, set.RejectSubmission, rejected, problems, nil), 409, problem.TypeInvalidTransition, "events"},
				{"jti of another event", rejected.CaseID, "", f.receiverSET(t, set.ForwardSubmission, rejected, nil, func(c *set.Claims) { c.JTI = rejectClaims.JTI }), 409, problem.TypeConflict, "jti"},
				{"jti of an event of another case", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, nil, func(c *set.Claims) { c.JTI = rejectClaims.JTI }), 409, problem.TypeConflict, "jti"},
				{"jti of another event of the case in upper case", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.JTI = strings.ToUpper(f.jti(s.SubmissionID, set.NotifySubmission)) }), 409, problem.TypeConflict, "jti"},
				{"jti of an event of another case in upper case", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, nil, func(c *set.Claims) { c.JTI = strings.ToUpper(rejectClaims.JTI) }), 409, problem.TypeConflict, "jti"},
				{"forwarded to a submission that does not exist", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, forwardTo(elsewhere.ID, newUUID(t), unsubscribed.CaseID), nil), 422, problem.TypeInvalidEvent, "forwardedTo"},
				{"forwarded to a submission of another case", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, forwardTo(elsewhere.ID, unsubscribed.SubmissionID, s.CaseID), nil), 422, problem.TypeInvalidEvent, "forwardedTo"},
				{"forwarded to a submission of another destination", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, forwardTo(d.ID, unsubscribed.SubmissionID, unsubscribed.CaseID), nil), 422, problem.TypeInvalidEvent, "forwardedTo"},
				{"forwarded to a submission not submitted", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, forwardTo(elsewhere.ID, unsent.SubmissionID, unsent.CaseID), nil), 422, problem.TypeInvalidEvent, "forwardedTo"},
				{"forwarded to itself", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, forwardTo(d.ID, s.SubmissionID, s.CaseID), nil), 422, problem.TypeInvalidEvent, "forwardedTo"},
				{"jti of Amtsbote's event of another case", s.CaseID, "", f.receiverSET(t, set.ForwardSubmission, s, nil, func(c *set.Claims) { c.JTI = f.jti(rejected.SubmissionID, set.NotifySubmission) }), 409, problem.TypeConflict, "jti"},
				{"issued in 2020", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.IssuedAt = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC) }), 422, problem.TypeInvalidEvent, "iat"},
				{"issued a day before the submission", s.CaseID, "", f.receiverSET(t, set.AcceptSubmission, s, accept, func(c *set.Claims) { c.IssuedAt = time.Now().Add(-24 * time.Hour).Truncate(time.Second) }), 422, problem.TypeInvalidEvent, "iat"},
				{"accept of a submission never fetched", unfetched.CaseID, "", f.receiverSET(t, set.AcceptSubmission, unfetched, set.AcceptPayload{AuthenticationTags: unfetched.tags()}, nil), 409, problem.TypeInvalidTransition, "events"},
				{"reject of a submission never fetched", unfetched.CaseID, "", f.receiverSET(t, set.RejectSubmission, unfetched, problems, nil), 409, problem.TypeInvalidTransition, "events"},
				{"accept before submit", incomplete.CaseID, "", f.receiverSET(t, set.AcceptSubmission, incomplete, accept, nil), 422, problem.TypeInvalidEvent, "authenticationTags"},
				{"case id not a UUID", "case-1", "", f.receiverSET(t, set.AcceptSubmission, s, accept, nil), 400, problem.TypeInvalidRequest, "caseId"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ct := tt.ct
					if ct == "" {
						ct = "application/jose"
					}
					f.call(t, http.MethodPost, "/v1/cases/"+tt.caseID+"/events", receiver, ct, strings.NewReader(tt.token)).
						problem(t, tt.status, tt.typ, tt.field)
					f.wantUnchangedFlow(t, before, s, other, rejected, incomplete, unfetched)
				})
			}

			// The right accept passes, once; forward before accept is fine too.
			f.postEvent(t, receiver, other.CaseID, f.receiverSET(t, set.ForwardSubmission, other, forwardTo(elsewhere.ID, unsubscribed.SubmissionID, unsubscribed.CaseID), nil)).want(t, http.StatusNoContent)
			// Forwarded, it leaves the pickup list and can still be
			// fetched, as FIT-Connect has it.
			flowtest.Eventually(t, 10*time.Second, func() error {
				if list := f.call(t, http.MethodGet, "/v1/submissions?destinationId="+d.ID, receiver, "", nil); strings.Contains(string(list.body), other.SubmissionID) {
					return fmt.Errorf("forwarded submission still listed: %s", list.body)
				}
				return nil
			})
			f.call(t, http.MethodGet, "/v1/submissions/"+other.SubmissionID, receiver, "", nil).want(t, http.StatusOK)
			f.postEvent(t, receiver, other.CaseID, f.receiverSET(t, set.AcceptSubmission, other, set.AcceptPayload{AuthenticationTags: other.tags()}, nil)).want(t, http.StatusNoContent)
			// Ids in upper case, as FIT-Connect's example SETs write them,
			// name the same submission, case and destination.
			// So do attachment ids in the tags, as the sender's metadata may
			// write them.
			upperTags := set.AcceptPayload{AuthenticationTags: set.AuthenticationTags{Metadata: tags.Metadata, Data: tags.Data, Attachments: map[string]string{}}}
			for aid, tag := range tags.Attachments {
				upperTags.AuthenticationTags.Attachments[strings.ToUpper(aid)] = tag
			}
			if len(upperTags.AuthenticationTags.Attachments) == 0 {
				t.Fatal("the submission has no attachments")
			}
			upper := f.receiverSET(t, set.AcceptSubmission, s, upperTags, func(c *set.Claims) {
				c.Subject = "submission:" + strings.ToUpper(s.SubmissionID)
				c.Txn = "case:" + strings.ToUpper(s.CaseID)
				c.Issuer = strings.ToUpper(d.ID)
			})
			f.postEvent(t, receiver, s.CaseID, upper).want(t, http.StatusNoContent)
			f.waitEvents(t, sender, other.CaseID, "create-submission", "submit-submission", "notify-submission", "forward-submission", "accept-submission")
			f.waitEvents(t, sender, s.CaseID, "create-submission", "submit-submission", "notify-submission", "accept-submission")
			f.waitStatus(t, s.SubmissionID, sealed.Accepted)
		})
	}
}

// TestBorrowedJTI proves that a receiver cannot take the place of an event
// of a case it has no part in by using that event's jti: Amtsbote's own
// jtis are keyed, so the derivation from public values the jtis once had
// names nothing, and Y's notify-submission is still recorded after a
// receiver of X posted an accept under the jti that derivation gives.
func TestBorrowedJTI(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t))
			x := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			y := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			sender := f.token("send:region:DE08")
			receiverX := f.token("subscribe:destination:" + x.ID)
			receiverY := f.token("subscribe:destination:" + y.ID)
			sx, sy := f.prepare(t, sender, x, 0), f.prepare(t, sender, y, 0)
			for _, s := range []sealedSubmission{sx, sy} {
				f.submit(t, sender, s).want(t, http.StatusAccepted)
				f.route(t, s.SubmissionID)
			}
			f.call(t, http.MethodGet, "/v1/submissions/"+sx.SubmissionID, receiverX, "", nil).want(t, http.StatusOK)

			public := uuid.NewSHA1(uuid.MustParse("3f0c8e0a-6b1d-4c55-9a43-2f8d7be1c6a4"), []byte(sy.SubmissionID+" "+set.NotifySubmission)).String()
			accept := f.receiverSET(t, set.AcceptSubmission, sx, set.AcceptPayload{AuthenticationTags: sx.tags()}, func(c *set.Claims) { c.JTI = public })
			f.postEvent(t, receiverX, sx.CaseID, accept).want(t, http.StatusNoContent)
			f.call(t, http.MethodGet, "/v1/submissions/"+sy.SubmissionID, receiverY, "", nil).want(t, http.StatusOK)
			f.waitEvents(t, sender, sx.CaseID, "create-submission", "submit-submission", "notify-submission", "accept-submission")
			f.waitEvents(t, sender, sy.CaseID, "create-submission", "submit-submission", "notify-submission")

			// The accept's jti is X's now: posting it in Y's case is a 409.
			again := f.receiverSET(t, set.ForwardSubmission, sy, nil, func(c *set.Claims) { c.JTI = public })
			f.postEvent(t, receiverY, sy.CaseID, again).problem(t, http.StatusConflict, problem.TypeConflict, "jti")
		})
	}
}

// TestEventLogOfANewCase proves that a case's event log answers as soon as
// its first submission exists, before any signer published Amtsbote's
// first event: 200 with the create-submission, which the read publishes,
// for the case's sender, the destination's receivers and operators, and
// 404 for anyone else as for an unknown case; and that a reply joins the
// case at once.
func TestEventLogOfANewCase(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			st := b.Open(t)
			bs, _ := bustest.Bus(t)
			// No event workers run: every event stays in the outbox.
			e := newEnvOn(t, st, withBus(bs))
			f := &flowEnv{env: e, bus: bs, contract: contractRouter(t, e.srv.URL)}
			d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			other := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			sender := f.token("send:region:DE08")
			created := f.create(t, sender, createBody(d))
			path := "/v1/cases/" + created.CaseID + "/events"

			for _, tt := range []struct{ name, token string }{
				{"sender", sender},
				{"receiver", f.token("subscribe:destination:" + d.ID)},
				{"operator", f.adminToken()},
			} {
				t.Run(tt.name, func(t *testing.T) {
					log := decodeReply[eventLogBody](t, f.call(t, http.MethodGet, path, tt.token, "", nil), http.StatusOK)
					if got := eventTypes(t, log.EventLog); log.Count != 1 || log.TotalCount != 1 || !slices.Equal(got, []string{"create-submission"}) {
						t.Errorf("event log of the new case: %v, count %d of %d; want the create-submission", got, log.Count, log.TotalCount)
					}
				})
			}
			for _, tt := range []struct {
				name, path, token string
				status            int
				typ               string
			}{
				{"another sender", path, f.token("send:region:DE08"), 404, problem.TypeCaseNotFound},
				{"another destination's receiver", path, f.token("subscribe:destination:" + other.ID), 404, problem.TypeCaseNotFound},
				{"unknown case", "/v1/cases/" + newUUID(t) + "/events", sender, 404, problem.TypeCaseNotFound},
			} {
				t.Run(tt.name, func(t *testing.T) {
					f.call(t, http.MethodGet, tt.path, tt.token, "", nil).problem(t, tt.status, tt.typ, "caseId")
				})
			}

			body := createBody(d)
			body["caseId"] = created.CaseID
			if reply := f.create(t, sender, body); reply.CaseID != created.CaseID || reply.SubmissionID == created.SubmissionID {
				t.Errorf("reply %+v to case %s", reply, created.CaseID)
			}
			if _, total, err := st.Events(context.Background(), created.CaseID, store.Page{}); err != nil || total != 0 {
				t.Errorf("the case has %d events recorded (%v); the test wants none", total, err)
			}

			// A submission of the same case to another destination: each
			// receiver sees the events of its own destination's submissions.
			body = createBody(other)
			body["caseId"] = created.CaseID
			elsewhere := f.create(t, sender, body)
			for _, tt := range []struct {
				name, token string
				want        int
			}{
				{"sender", sender, 3},
				{"receiver", f.token("subscribe:destination:" + d.ID), 2},
				{"other receiver", f.token("subscribe:destination:" + other.ID), 1},
				{"other manager", f.token("manage:destination:" + other.ID), 1},
				{"operator", f.adminToken(), 3},
			} {
				t.Run("two destinations/"+tt.name, func(t *testing.T) {
					log := decodeReply[eventLogBody](t, f.call(t, http.MethodGet, path+"?limit=1", tt.token, "", nil), http.StatusOK)
					if log.Count != 1 || log.TotalCount != tt.want {
						t.Errorf("event log: %d of %d, want 1 of %d", log.Count, log.TotalCount, tt.want)
					}
					if tt.want == 1 {
						_, c, err := set.Parse(log.EventLog[0])
						if sid, _ := c.SubmissionID(); err != nil || sid != elsewhere.SubmissionID {
							t.Errorf("the other destination's receiver sees an event of %s (%v), want only %s's", sid, err, elsewhere.SubmissionID)
						}
					}
				})
			}
		})
	}
}

// TestCaseEventAfterAStop proves that a receiver's event is decided
// against the case's events in EVENTS, not against the store's
// projection: a status in the store that no event of the case leads to
// (as a writer stopped halfway once left it) does not refuse the event,
// and a second event of the same kind is refused once one is published.
func TestCaseEventAfterAStop(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t))
			d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			sender := f.token("send:region:DE08")
			receiver := f.token("subscribe:destination:" + d.ID)
			s := f.prepare(t, sender, d, 0)
			f.submit(t, sender, s).want(t, http.StatusAccepted)
			f.route(t, s.SubmissionID)
			f.call(t, http.MethodGet, "/v1/submissions/"+s.SubmissionID, receiver, "", nil).want(t, http.StatusOK)

			// A status in the store without its event.
			if _, err := f.st.UpdateSubmission(context.Background(), s.SubmissionID, func(sub *store.Submission) error {
				sub.Status = sealed.Accepted
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			accept := set.AcceptPayload{AuthenticationTags: s.tags()}
			f.postEvent(t, receiver, s.CaseID, f.receiverSET(t, set.AcceptSubmission, s, accept, nil)).want(t, http.StatusNoContent)
			f.waitEvents(t, sender, s.CaseID, "create-submission", "submit-submission", "notify-submission", "accept-submission")

			f.call(t, http.MethodPost, "/v1/cases/"+s.CaseID+"/events", receiver, "application/jose",
				strings.NewReader(f.receiverSET(t, set.AcceptSubmission, s, accept, nil))).
				problem(t, http.StatusConflict, problem.TypeInvalidTransition, "events")
		})
	}
}

// forwardTo is a forward-submission's payload naming the submission the
// content became.
func forwardTo(destinationID, submissionID, caseID string) set.ForwardPayload {
	return set.ForwardPayload{ForwardedTo: &set.ForwardTarget{DestinationID: destinationID, SubmissionID: submissionID, CaseID: caseID}}
}
