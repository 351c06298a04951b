package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestPickupAuthorization proves that receivers see only their
// destinations' submissions and senders only their own cases, and that a
// refused or failed fetch records no pickup.
func TestPickupAuthorization(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFlowEnv(t, b.Open(t))
			dA := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			dB := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			senderA := f.token("send:region:DE08")
			senderB := f.token("send:region:DE08")
			receiverA := f.token("subscribe:destination:" + dA.ID)
			receiverB := f.token("subscribe:destination:" + dB.ID)
			managerB := f.token("manage:destination:" + dB.ID)

			routed := f.prepare(t, senderA, dA, 1)
			f.submit(t, senderA, routed).want(t, http.StatusAccepted)
			f.route(t, routed.SubmissionID)
			unrouted := f.prepare(t, senderA, dA, 0)
			f.submit(t, senderA, unrouted).want(t, http.StatusAccepted)
			incomplete := f.prepare(t, senderA, dA, 0)
			before := f.snapshot(t, routed, unrouted, incomplete)

			sub := "/v1/submissions/" + routed.SubmissionID
			tests := []struct {
				name       string
				method     string
				path       string
				token      string
				status     int
				typ, field string
			}{
				{"list another destination", http.MethodGet, "/v1/submissions?destinationId=" + dA.ID, receiverB, 403, problem.TypeForbidden, "scope"},
				{"list as a sender", http.MethodGet, "/v1/submissions", senderA, 403, problem.TypeForbidden, "scope"},
				{"list as a manager", http.MethodGet, "/v1/submissions?destinationId=" + dB.ID, managerB, 403, problem.TypeForbidden, "scope"},
				{"list with a bad destinationId", http.MethodGet, "/v1/submissions?destinationId=dest-a", receiverA, 400, problem.TypeInvalidRequest, "destinationId"},
				{"list with a bad limit", http.MethodGet, "/v1/submissions?limit=501", receiverA, 400, problem.TypeInvalidRequest, "limit"},
				{"list with a bad offset", http.MethodGet, "/v1/submissions?offset=-1", receiverA, 400, problem.TypeInvalidRequest, "offset"},
				{"list with an offset beyond int32", http.MethodGet, "/v1/submissions?offset=2147483648", receiverA, 400, problem.TypeInvalidRequest, "offset"},
				{"list with two limits", http.MethodGet, "/v1/submissions?limit=1&limit=2", receiverA, 400, problem.TypeInvalidRequest, "limit"},
				{"list with two destinations", http.MethodGet, "/v1/submissions?destinationId=" + dA.ID + "&destinationId=" + dB.ID, receiverA, 400, problem.TypeInvalidRequest, "destinationId"},
				{"fetch another destination's", http.MethodGet, sub, receiverB, 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"fetch as the sender", http.MethodGet, sub, senderA, 403, problem.TypeForbidden, "scope"},
				{"attachment of another destination", http.MethodGet, sub + "/attachments/" + routed.order[0], receiverB, 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"fetch unknown as the sender", http.MethodGet, "/v1/submissions/" + newUUID(t), senderA, 403, problem.TypeForbidden, "scope"},
				{"fetch unknown", http.MethodGet, "/v1/submissions/" + newUUID(t), receiverA, 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"fetch not routed", http.MethodGet, "/v1/submissions/" + unrouted.SubmissionID, receiverA, 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"fetch incomplete", http.MethodGet, "/v1/submissions/" + incomplete.SubmissionID, receiverA, 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"attachment not uploaded", http.MethodGet, sub + "/attachments/" + newUUID(t), receiverA, 404, problem.TypeAttachmentNotFound, "attachmentId"},
				{"attachment of one not routed", http.MethodGet, "/v1/submissions/" + unrouted.SubmissionID + "/attachments/" + routed.order[0], receiverA, 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"case of another sender", http.MethodGet, "/v1/cases/" + routed.CaseID + "/events", senderB, 404, problem.TypeCaseNotFound, "caseId"},
				{"case of another destination", http.MethodGet, "/v1/cases/" + routed.CaseID + "/events", receiverB, 404, problem.TypeCaseNotFound, "caseId"},
				{"unknown case", http.MethodGet, "/v1/cases/" + newUUID(t) + "/events", senderA, 404, problem.TypeCaseNotFound, "caseId"},
				{"case id not a UUID", http.MethodGet, "/v1/cases/case-1/events", senderA, 404, problem.TypeCaseNotFound, "caseId"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					f.call(t, tt.method, tt.path, tt.token, "", nil).problem(t, tt.status, tt.typ, tt.field)
					f.wantUnchangedFlow(t, before, routed, unrouted, incomplete)
				})
			}
			// HEAD is safe: it answers as a fetch would and picks nothing up.
			t.Run("HEAD", func(t *testing.T) {
				r := f.call(t, http.MethodHead, sub, receiverA, "", nil)
				r.want(t, http.StatusOK)
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				f.wantUnchangedFlow(t, before, routed, unrouted, incomplete)
			})
			// Permission comes before the body, and what is not one's own
			// answers as what does not exist.
			t.Run("malformed SET to another destination's case", func(t *testing.T) {
				f.postEvent(t, receiverB, routed.CaseID, "kein.token").problem(t, 404, problem.TypeCaseNotFound, "caseId")
				f.postEvent(t, receiverB, newUUID(t), "kein.token").problem(t, 404, problem.TypeCaseNotFound, "caseId")
				if p := f.postEvent(t, senderA, routed.CaseID, "kein.token").problem(t, 403, problem.TypeForbidden, "scope"); !strings.Contains(p.Detail, "posting a receiver's event") {
					t.Errorf("detail %q does not name what was refused", p.Detail)
				}
				f.postEvent(t, senderA, newUUID(t), "kein.token").problem(t, 403, problem.TypeForbidden, "scope")
				f.wantUnchangedFlow(t, before, routed, unrouted, incomplete)
			})
			t.Run("answer another destination's submission", func(t *testing.T) {
				accept := f.receiverSET(t, set.AcceptSubmission, routed, set.AcceptPayload{AuthenticationTags: routed.tags()}, nil)
				f.postEvent(t, receiverB, routed.CaseID, accept).problem(t, 404, problem.TypeCaseNotFound, "caseId")
				f.wantUnchangedFlow(t, before, routed, unrouted, incomplete)
			})

			// What each may see.
			if l := decodeReply[pickupList](t, f.call(t, http.MethodGet, "/v1/submissions", receiverB, "", nil), 200); l.TotalCount != 0 || l.Submissions == nil {
				t.Errorf("receiver B lists %+v", l)
			}
			if l := decodeReply[pickupList](t, f.call(t, http.MethodGet, "/v1/submissions", receiverA, "", nil), 200); l.TotalCount != 1 {
				t.Errorf("receiver A lists %+v", l)
			}
			f.call(t, http.MethodGet, "/v1/cases/"+routed.CaseID+"/events", managerB, "", nil).problem(t, 404, problem.TypeCaseNotFound, "caseId")
			f.call(t, http.MethodGet, "/v1/cases/"+routed.CaseID+"/events", receiverA, "", nil).want(t, 200)
			f.call(t, http.MethodGet, "/v1/cases/"+routed.CaseID+"/events", senderA, "", nil).want(t, 200)
			f.call(t, http.MethodGet, "/v1/cases/"+routed.CaseID+"/events", f.adminToken(), "", nil).want(t, 200)
		})
	}
}
