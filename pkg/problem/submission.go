package problem

import (
	"fmt"
	"net/http"
	"strings"
)

// Problem types of the submission flow: creating, uploading, submitting,
// picking up and answering a submission.
const (
	// TypeDestinationInactive is FIT-Connect's destination-state-invalid.
	TypeDestinationInactive    = TypeDestinationStateInvalid
	TypeServiceNotOffered      = Base + "service-not-offered"
	TypeRegionNotServed        = Base + "region-not-served"
	TypeInvalidJWE             = Base + "invalid-jwe"
	TypeUnknownEncryptionKey   = Base + "unknown-encryption-key"
	TypeAttachmentNotAnnounced = Base + "attachment-not-announced"
	TypeMissingAttachments     = Base + "missing-attachments"
	TypeSubmissionState        = Base + "submission-state"
	TypeIdempotencyMismatch    = Base + "idempotency-mismatch"
	TypeInvalidEvent           = Base + "invalid-event"
	TypeInvalidTransition      = Base + "invalid-transition"
	TypeCaseNotFound           = Base + "case-not-found"
	TypeAttachmentNotFound     = Base + "attachment-not-found"
)

// DestinationInactive is FIT-Connect's destination-state-invalid, a 422
// for a submission to a destination whose status is not active.
func DestinationInactive(id, status string) *Problem {
	return New(TypeDestinationInactive, "Destination not active", http.StatusUnprocessableEntity, "destinationId",
		fmt.Sprintf("destination %s is %s and accepts no submissions", id, status))
}

// ServiceNotOffered is a 422 for a service the destination does not offer now.
func ServiceNotOffered(field, destinationID, service string) *Problem {
	return New(TypeServiceNotOffered, "Service not offered", http.StatusUnprocessableEntity, field,
		fmt.Sprintf("destination %s does not offer service %s", destinationID, service))
}

// RegionNotServed is a 422 for a region the destination does not serve
// the service in.
func RegionNotServed(field, detail string) *Problem {
	return New(TypeRegionNotServed, "Region not served", http.StatusUnprocessableEntity, field, detail)
}

// InvalidJWE is a 400 for a JWE that is not compact, not base64url or
// declares other algorithms than FIT-Connect allows; field names the JWE
// and its offending part ("encryptedMetadata.header.alg").
func InvalidJWE(field, detail string) *Problem {
	return New(TypeInvalidJWE, "Invalid JWE", http.StatusBadRequest, field, detail)
}

// UnknownEncryptionKey is a 422 for a JWE whose kid is not a valid
// encryption key of the destination.
func UnknownEncryptionKey(field, detail string) *Problem {
	return New(TypeUnknownEncryptionKey, "Unknown encryption key", http.StatusUnprocessableEntity, field, detail)
}

// AttachmentNotAnnounced is a 422 for an upload under an id the submission
// did not announce.
func AttachmentNotAnnounced(submissionID, attachmentID string) *Problem {
	return New(TypeAttachmentNotAnnounced, "Attachment not announced", http.StatusUnprocessableEntity, "attachmentId",
		fmt.Sprintf("submission %s announced no attachment %s", submissionID, attachmentID))
}

// MissingAttachments is a 422 for a submit before every announced
// attachment was uploaded.
func MissingAttachments(submissionID string, missing []string) *Problem {
	return New(TypeMissingAttachments, "Attachments missing", http.StatusUnprocessableEntity, "attachments",
		fmt.Sprintf("submission %s announced attachments that were not uploaded: %s", submissionID, strings.Join(missing, ", "))).
		With("missingAttachments", missing)
}

// SubmissionState is a 422 for a request the submission's status does not
// allow (an upload after submit).
func SubmissionState(field, detail string) *Problem {
	return New(TypeSubmissionState, "Submission in wrong state", http.StatusUnprocessableEntity, field, detail)
}

// IdempotencyMismatch is a 422 for a request that repeats a completed
// one's identity (an Idempotency-Key, a submission's submit) with other
// content.
func IdempotencyMismatch(field, detail string) *Problem {
	return New(TypeIdempotencyMismatch, "Request differs from the first", http.StatusUnprocessableEntity, field, detail)
}

// InvalidEvent is a 422 for a security event token that is well-formed but
// not acceptable: a bad signature, issuer, subject, case or payload. A
// token that is not a SET at all is a 400 of the same type (see
// MalformedEvent).
func InvalidEvent(field, detail string) *Problem {
	return New(TypeInvalidEvent, "Invalid security event token", http.StatusUnprocessableEntity, field, detail)
}

// MalformedEvent is a 400 for a body that is not a compact FIT-Connect SET.
func MalformedEvent(field, detail string) *Problem {
	return New(TypeInvalidEvent, "Malformed security event token", http.StatusBadRequest, field, detail)
}

// InvalidTransition is a 409 for an event the submission's status does not
// allow (accept after reject).
func InvalidTransition(detail string) *Problem {
	return New(TypeInvalidTransition, "Invalid state transition", http.StatusConflict, "events", detail)
}

// CaseNotFound is a 404 for an unknown case.
func CaseNotFound(id string) *Problem {
	return New(TypeCaseNotFound, "Case not found", http.StatusNotFound, "caseId",
		fmt.Sprintf("case %s does not exist or is not this client's", id))
}

// AttachmentNotFound is a 404 for an attachment that was not uploaded.
func AttachmentNotFound(submissionID, attachmentID string) *Problem {
	return New(TypeAttachmentNotFound, "Attachment not found", http.StatusNotFound, "attachmentId",
		fmt.Sprintf("submission %s has no attachment %s", submissionID, attachmentID))
}
