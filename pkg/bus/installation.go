package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Installation returns the id of the installation the bus belongs to (""
// while none is recorded) and whether EVENTS has ever carried an event.
// The id is REGISTRY's message on RegistryInstallation, read from the
// stream's leader.
func (b *Bus) Installation(ctx context.Context) (id string, used bool, err error) {
	st, err := b.js.Stream(ctx, StreamEvents)
	if err != nil {
		return "", false, fmt.Errorf("installation: stream %s: %w", StreamEvents, err)
	}
	used = st.CachedInfo().State.LastSeq > 0
	m, err := b.leaderGet(ctx, StreamRegistry, msgGetRequest{LastFor: RegistryInstallation})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return "", used, nil
	case err != nil:
		return "", false, fmt.Errorf("installation: %w", err)
	}
	return string(m.Data), used, nil
}

// RecordInstallation records id as the bus's installation unless one is
// recorded, and returns the one recorded.
func (b *Bus) RecordInstallation(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", errors.New("record installation: empty id")
	}
	_, perr := b.js.Publish(ctx, RegistryInstallation, []byte(id), jetstream.WithExpectLastSequencePerSubject(0))
	// Published, or another process came first: read what is recorded.
	got, _, err := b.Installation(ctx)
	switch {
	case err != nil:
		return "", fmt.Errorf("record installation %s: %w", id, err)
	case got == "" && perr != nil:
		return "", fmt.Errorf("record installation %s: %w", id, perr)
	case got == "":
		return "", fmt.Errorf("record installation %s: not found after publishing", id)
	}
	return got, nil
}
