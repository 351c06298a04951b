package sealed

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
)

// eventNamespace is the UUID namespace of the jtis EventJTI derives. It
// must never change: stored events and EVENTS' duplicate window know
// Amtsbote's events by these jtis.
var eventNamespace = uuid.MustParse("3f0c8e0a-6b1d-4c55-9a43-2f8d7be1c6a4")

// JTIKey derives the jtis of Amtsbote's own events. It is secret: a jti
// others could compute in advance could be posted by a receiver first and
// so take the place of Amtsbote's event.
type JTIKey []byte

// NewJTIKey returns the key derived from secret, Amtsbote's signing key's
// private part, which every role that issues events holds.
func NewJTIKey(secret []byte) JTIKey {
	m := hmac.New(sha256.New, []byte("amtsbote event jti"))
	m.Write(secret)
	return m.Sum(nil)
}

// EventJTI returns the jti of Amtsbote's own event about a submission: a
// name-based UUID (version 5) of a keyed hash of the submission id and the
// event URI (set.SubmitSubmission, …). Every role that signs the same
// event, a retry or a second process, derives the same jti, so EVENTS
// (Nats-Msg-Id) and the store keep it once.
func (k JTIKey) EventJTI(submissionID, eventURI string) string {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(submissionID + " " + eventURI))
	return uuid.NewSHA1(eventNamespace, m.Sum(nil)).String()
}

// JTIClaimKey is the state key under which a receiver's jti is claimed
// for its case: jtis are unique across all cases, a UUID whatever the
// case of its letters.
func JTIClaimKey(jti string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(jti)))
	return "jti." + hex.EncodeToString(sum[:])
}
