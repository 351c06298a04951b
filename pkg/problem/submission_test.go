package problem_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

func TestSubmissionProblems(t *testing.T) {
	const sid, aid = "c0a80101-0000-4000-8000-000000000001", "c0a80101-0000-4000-8000-000000000002"
	tests := []struct {
		name   string
		p      *problem.Problem
		typ    string
		status int
		field  string
		words  []string
	}{
		{"destination inactive", problem.DestinationInactive(sid, "inactive"), problem.TypeDestinationInactive, 422, "destinationId", []string{sid, "inactive"}},
		{"service not offered", problem.ServiceNotOffered("serviceType.identifier", sid, "urn:x:y"), problem.TypeServiceNotOffered, 422, "serviceType.identifier", []string{"urn:x:y"}},
		{"region not served", problem.RegionNotServed("region", "DE09 is not served"), problem.TypeRegionNotServed, 422, "region", []string{"DE09"}},
		{"invalid jwe", problem.InvalidJWE("encryptedData.header.enc", "must be A256GCM"), problem.TypeInvalidJWE, 400, "encryptedData.header.enc", []string{"A256GCM"}},
		{"unknown key", problem.UnknownEncryptionKey("header.kid", "kid k1 is retired"), problem.TypeUnknownEncryptionKey, 422, "header.kid", []string{"retired"}},
		{"not announced", problem.AttachmentNotAnnounced(sid, aid), problem.TypeAttachmentNotAnnounced, 422, "attachmentId", []string{sid, aid}},
		{"missing", problem.MissingAttachments(sid, []string{aid}), problem.TypeMissingAttachments, 422, "attachments", []string{aid}},
		{"state", problem.SubmissionState("submissionId", "submitted already"), problem.TypeSubmissionState, 422, "submissionId", []string{"submitted"}},
		{"idempotency", problem.IdempotencyMismatch("Idempotency-Key", "other body"), problem.TypeIdempotencyMismatch, 422, "Idempotency-Key", []string{"other body"}},
		{"invalid event", problem.InvalidEvent("iss", "wrong issuer"), problem.TypeInvalidEvent, 422, "iss", []string{"issuer"}},
		{"malformed event", problem.MalformedEvent("token", "two segments"), problem.TypeInvalidEvent, 400, "token", []string{"segments"}},
		{"transition", problem.InvalidTransition("accept after reject"), problem.TypeInvalidTransition, 409, "events", []string{"reject"}},
		{"case", problem.CaseNotFound(sid), problem.TypeCaseNotFound, 404, "caseId", []string{sid}},
		{"attachment", problem.AttachmentNotFound(sid, aid), problem.TypeAttachmentNotFound, 404, "attachmentId", []string{aid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.p.Type != tt.typ || tt.p.Status != tt.status || tt.p.Field != tt.field {
				t.Errorf("got %s %d %s, want %s %d %s", tt.p.Type, tt.p.Status, tt.p.Field, tt.typ, tt.status, tt.field)
			}
			if http.StatusText(tt.p.Status) == "" || tt.p.Title == "" {
				t.Errorf("status %d or title %q empty", tt.p.Status, tt.p.Title)
			}
			for _, w := range append([]string{tt.field}, tt.words...) {
				if !strings.Contains(tt.p.Detail, w) {
					t.Errorf("detail %q does not name %q", tt.p.Detail, w)
				}
			}
			if !errors.Is(tt.p, &problem.Problem{Type: tt.typ, Status: tt.status}) {
				t.Error("errors.Is does not match the kind")
			}
		})
	}
	if got := problem.MissingAttachments(sid, []string{aid}).Extra["missingAttachments"]; !reflect.DeepEqual(got, []string{aid}) {
		t.Errorf("missingAttachments = %v", got)
	}
}
