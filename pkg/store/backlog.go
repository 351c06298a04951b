package store

import (
	"context"
	"time"
)

// Backlog is what waits at one destination: the submissions on its
// pickup list (submitted and routed, fetched or not) and, of those, the
// ones never fetched, the oldest of them and how many are overdue.
type Backlog struct {
	DestinationID string
	// HomeRegion is the destination's home region (ARS, without "DE");
	// "" when the store does not know the destination.
	HomeRegion string
	// Listed is the size of the pickup list.
	Listed int
	// Unpicked counts the listed submissions never fetched.
	Unpicked int
	// OldestUnpicked is the submit time of the oldest unpicked one; nil
	// when none waits.
	OldestUnpicked *time.Time
	// Overdue counts, for each cut-off given to Backlogs, the unpicked
	// submissions submitted before it.
	Overdue []int
}

// Backlogs reports the waiting work of every destination, for operators.
type Backlogs interface {
	// Backlogs lists the backlog of each destination with at least one
	// submission on its pickup list, ordered by destination id. Overdue
	// counts are taken at each of the cut-offs (a time before which a
	// submission counts as overdue). It is safe for concurrent use.
	Backlogs(ctx context.Context, cutoffs ...time.Time) ([]Backlog, error)
}
