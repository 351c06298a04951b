package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/amtsbote/amtsbote/pkg/sealed"
)

// ErrNotRecorded means a message names a submission other than the one
// the gateway recorded: none, or one of another case, destination,
// service, region or sender.
var ErrNotRecorded = errors.New("is not the submission recorded")

// SubmissionReader reads one submission's record.
type SubmissionReader interface {
	Submission(ctx context.Context, id string) (Submission, error)
}

// CheckRecorded checks m against the submission st recorded. A message
// written by someone other than Amtsbote (a dead letter, which whoever may
// write to DEAD writes) is published again only when it passes, so that
// what goes out with Amtsbote's rights is what the sender submitted. It
// returns an error wrapping ErrNotRecorded when m is not that submission,
// another when the store could not be read.
func CheckRecorded(ctx context.Context, st SubmissionReader, m sealed.Submission) error {
	rec, err := st.Submission(ctx, m.SubmissionID)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: submission %s is none Amtsbote recorded", ErrNotRecorded, m.SubmissionID)
	}
	if err != nil {
		return fmt.Errorf("read submission %s: %w", m.SubmissionID, err)
	}
	for _, f := range []struct{ name, got, want string }{
		{"caseId", m.CaseID, rec.CaseID},
		{"destinationId", m.DestinationID, rec.DestinationID},
		{"service", m.Service, rec.ServiceIdentifier},
		{"region", m.Region, rec.Region},
		{"senderClientId", m.SenderClientID, rec.SenderClientID},
	} {
		if !strings.EqualFold(f.got, f.want) {
			return fmt.Errorf("%w: submission %s: %s %q is not the recorded %q", ErrNotRecorded, m.SubmissionID, f.name, f.got, f.want)
		}
	}
	return nil
}

// Recorded is CheckRecorded against st, for each message it is given.
func Recorded(st SubmissionReader) func(context.Context, sealed.Submission) error {
	return func(ctx context.Context, m sealed.Submission) error { return CheckRecorded(ctx, st, m) }
}
