package sealed

// Object names in the object store. Everything of a submission lives under
// ContentPrefix(id), so deleting its content is deleting that prefix.

// ContentPrefix is the prefix of every object of submission id.
func ContentPrefix(submissionID string) string { return "submissions/" + submissionID + "/" }

// PayloadObject names the object holding a submission's Payload as JSON.
// The gateway writes it on submit whatever its size; messages carry it
// inline as well when it is at most InlineLimit bytes.
func PayloadObject(submissionID string) string { return ContentPrefix(submissionID) + "payload" }

// AttachmentObject names the object holding one encrypted attachment (a
// compact JWE, as uploaded).
func AttachmentObject(submissionID, attachmentID string) string {
	return ContentPrefix(submissionID) + "attachments/" + attachmentID
}
