package flowtest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestBackendsAreFresh proves that every Open gives an empty store of its
// own: what one test writes, the next does not see.
func TestBackendsAreFresh(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			first, second := be.Open(t), be.Open(t)
			sub := store.Submission{ID: "s1", CaseID: "c1", DestinationID: "d1", Progress: sealed.Progress{Status: sealed.Incomplete}}
			if err := first.CreateSubmission(ctx, sub); err != nil {
				t.Fatalf("create: %v", err)
			}
			if _, err := first.Submission(ctx, "s1"); err != nil {
				t.Fatalf("read back: %v", err)
			}
			if _, err := second.Submission(ctx, "s1"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the second store: %v, want ErrNotFound", err)
			}
		})
	}
}

// runner returns its error once cancelled.
type runner struct{ err error }

func (r runner) Run(ctx context.Context) error {
	<-ctx.Done()
	return r.err
}

func TestStartStop(t *testing.T) {
	r := flowtest.Start(t, runner{})
	r.Stop(t)
	r.Stop(t) // a second Stop does nothing
}
