package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// RegistryDestination returns the REGISTRY subject of a destination:
// ab.registry.destination.<id>.
func RegistryDestination(destinationID string) (string, error) {
	id, err := uuidToken("destination id", destinationID)
	if err != nil {
		return "", fmt.Errorf("registry subject: %w", err)
	}
	return registryDest + id, nil
}

// ParseRegistrySubject tells the destination a REGISTRY subject names, or
// reference = true for RegistryReference.
func ParseRegistrySubject(subject string) (destinationID string, reference bool, err error) {
	if subject == RegistryReference {
		return "", true, nil
	}
	if len(subject) > len(registryDest) && subject[:len(registryDest)] == registryDest {
		id, err := uuidToken("destination id", subject[len(registryDest):])
		return id, false, err
	}
	return "", false, fmt.Errorf("%q is no registry subject: %w", subject, ErrInvalidSubject)
}

// Announce publishes a registry change to subject (RegistryDestination or
// RegistryReference) and returns its sequence, the new registry revision.
func (b *Bus) Announce(ctx context.Context, subject string, data []byte) (uint64, error) {
	if err := checkPublishSubject(subject); err != nil {
		return 0, fmt.Errorf("announce: %w", err)
	}
	ack, err := b.js.Publish(ctx, subject, data)
	if err != nil {
		return 0, fmt.Errorf("announce on %s: %w", subject, err)
	}
	return ack.Sequence, nil
}

// RegistryRevision returns REGISTRY's last sequence: the revision a
// process that applied everything is at.
func (b *Bus) RegistryRevision(ctx context.Context) (uint64, error) {
	st, err := b.js.Stream(ctx, StreamRegistry)
	if err != nil {
		return 0, fmt.Errorf("registry revision: %w", err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// RegistryChange is one message of REGISTRY.
type RegistryChange struct {
	Subject  string
	Data     []byte
	Revision uint64
}

// FollowRegistry hands every REGISTRY message from revision from on to
// apply, in order, until ctx ends (it then returns nil) or the stream
// cannot be followed. It holds one ordered consumer, which the server
// removes when it ends.
func (b *Bus) FollowRegistry(ctx context.Context, from uint64, apply func(RegistryChange)) error {
	cons, err := b.js.OrderedConsumer(ctx, StreamRegistry, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("follow registry: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow registry: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow registry: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		apply(RegistryChange{Subject: msg.Subject(), Data: msg.Data(), Revision: meta.Sequence.Stream})
	}
}
