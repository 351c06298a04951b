package sealed

import "strings"

// Object names in the object store. Everything of a submission lives under
// ContentPrefix(id), so deleting its content is deleting that prefix.

// ContentPrefix is the prefix of every object of submission id.
func ContentPrefix(submissionID string) string { return "submissions/" + submissionID + "/" }

// PayloadObject names the object holding a submission's Payload as JSON
// when it is larger than InlineLimit bytes; a smaller one is carried inline
// by the messages and kept under PayloadKey.
func PayloadObject(submissionID string) string { return ContentPrefix(submissionID) + "payload" }

// AttachmentObject names the object holding one encrypted attachment (a
// compact JWE, as uploaded).
func AttachmentObject(submissionID, attachmentID string) string {
	return ContentPrefix(submissionID) + "attachments/" + attachmentID
}

// Keys in the key-value bucket of in-flight state (bus.BucketState). The
// gateway writes them; the ledger deletes a submission's keys with its
// content.

// TagsKey names the entry holding the authentication tags of a
// submission's submit-submission event (set.AuthenticationTags as JSON),
// which an accept-submission must echo.
func TagsKey(submissionID string) string { return "tags." + submissionID }

// AttachmentTagKey names the entry holding the authentication tag (the
// last segment of the JWE) of one uploaded attachment, alone: as gateways
// before AttachmentUploadKey read it.
func AttachmentTagKey(submissionID, attachmentID string) string {
	return "att." + submissionID + "." + attachmentID
}

// AttachmentUploadKey names the entry of one attachment's upload
// (AttachmentUpload): its tag and the digest of the object it was read
// from. Object and entry are written one after the other, so of two
// uploads of one attachment at once each may win one; the digest tells
// whether tag and object belong together.
func AttachmentUploadKey(submissionID, attachmentID string) string {
	return "attu." + submissionID + "." + attachmentID
}

// AttachmentCommitKey names the entry an upload of one attachment holds
// while its object becomes the attachment's content, and SubmitLockKey
// the one a submit writes before it reads the attachments' tags: each
// side writes its own, then reads the other's, so that no upload replaces
// an attachment under a submit that read the tag before it.
func AttachmentCommitKey(submissionID, attachmentID string) string {
	return "attc." + submissionID + "." + attachmentID
}

// SubmitLockKey names the entry of a submission's submit (see
// AttachmentCommitKey).
func SubmitLockKey(submissionID string) string { return "submitting." + submissionID }

// AttachmentUpload is the value of an AttachmentUploadKey entry.
func AttachmentUpload(tag, digest string) []byte { return []byte(tag + " " + digest) }

// ParseAttachmentUpload reads an AttachmentUpload value.
func ParseAttachmentUpload(value []byte) (tag, digest string) {
	tag, digest, _ = strings.Cut(string(value), " ")
	return tag, digest
}

// OutboxPrefix starts the key of every outbox entry: an event of
// Amtsbote's own (create-, submit- or notify-submission) accepted but
// perhaps not yet published.
const OutboxPrefix = "outbox."

// OutboxKey names the outbox entry of the event with jti (EventJTI).
func OutboxKey(jti string) string { return OutboxPrefix + jti }

// PayloadKey names the entry holding a submission's Payload as JSON when
// it is at most InlineLimit bytes (bus.PutCheckedState); a larger one is
// the object PayloadObject.
func PayloadKey(submissionID string) string { return "payload." + submissionID }
