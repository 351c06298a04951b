package sealed

import "github.com/google/uuid"

// eventNamespace is the UUID namespace of the jtis EventJTI derives. It
// must never change: stored events and EVENTS' duplicate window know
// Amtsbote's events by these jtis.
var eventNamespace = uuid.MustParse("3f0c8e0a-6b1d-4c55-9a43-2f8d7be1c6a4")

// EventJTI returns the jti of Amtsbote's own event about a submission: a
// name-based UUID (version 5) of the submission id and the event URI
// (set.SubmitSubmission, …). Every role that signs the same event, a retry
// or a second process, derives the same jti, so EVENTS (Nats-Msg-Id) and
// the store (AppendEvent) keep it once; the router and the ledger reject
// a submission under one jti, whichever does it.
func EventJTI(submissionID, eventURI string) string {
	return uuid.NewSHA1(eventNamespace, []byte(submissionID+" "+eventURI)).String()
}
