package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of TopologyConfig.
const (
	// DefaultDuplicates is the window in which a repeated Nats-Msg-Id is dropped.
	DefaultDuplicates = 2 * time.Minute
	// DefaultEventsMaxAge keeps a case's events 730 days, FIT-Connect's
	// retention of the event log.
	DefaultEventsMaxAge = 730 * 24 * time.Hour
	// DefaultSubmissionMaxAge bounds INGRESS, INBOX and DEAD: FIT-Connect
	// deletes a submission that was not picked up on day 21.
	DefaultSubmissionMaxAge = 21 * 24 * time.Hour
)

// TopologyConfig sizes the streams and buckets Ensure creates. Zero values
// take the defaults.
type TopologyConfig struct {
	// Replicas of every stream and bucket: 1 in dev, 3 in production.
	Replicas int
	// Duplicates is the deduplication window; default DefaultDuplicates.
	Duplicates time.Duration
	// EventsMaxAge bounds EVENTS; default DefaultEventsMaxAge.
	EventsMaxAge time.Duration
	// SubmissionMaxAge bounds INGRESS, INBOX, DEAD and CALLBACKS; default
	// DefaultSubmissionMaxAge.
	SubmissionMaxAge time.Duration
	// PayloadMaxAge bounds objects in BucketPayloads and entries in
	// BucketState; default DefaultSubmissionMaxAge. The ledger deletes them
	// on FIT-Connect's deadlines; this is the backstop.
	PayloadMaxAge time.Duration
	// Memory stores everything in memory instead of files; for tests only.
	Memory bool
}

// withDefaults fills zero values and checks the rest.
func (c TopologyConfig) withDefaults() (TopologyConfig, error) {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return c, fmt.Errorf("replicas %d: want 1 to 5", c.Replicas)
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = DefaultEventsMaxAge
	}
	if c.SubmissionMaxAge == 0 {
		c.SubmissionMaxAge = DefaultSubmissionMaxAge
	}
	if c.PayloadMaxAge == 0 {
		c.PayloadMaxAge = DefaultSubmissionMaxAge
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"duplicates", c.Duplicates}, {"events max age", c.EventsMaxAge}, {"submission max age", c.SubmissionMaxAge}, {"payload max age", c.PayloadMaxAge}} {
		if d.v < 0 {
			return c, fmt.Errorf("%s %s: negative", d.name, d.v)
		}
	}
	if c.Duplicates > c.SubmissionMaxAge || c.Duplicates > c.EventsMaxAge {
		return c, fmt.Errorf("duplicates %s: longer than a stream's max age", c.Duplicates)
	}
	return c, nil
}

// Streams returns the stream configurations Ensure applies.
func (c TopologyConfig) Streams() ([]jetstream.StreamConfig, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	base := func(name, prefix, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:              name,
			Description:       desc,
			Subjects:          []string{prefix + ".>"},
			Retention:         jetstream.LimitsPolicy,
			Discard:           jetstream.DiscardOld,
			MaxAge:            c.SubmissionMaxAge,
			Storage:           storage,
			Replicas:          c.Replicas,
			Duplicates:        c.Duplicates,
			MaxMsgs:           -1,
			MaxBytes:          -1,
			MaxMsgsPerSubject: -1,
			MaxConsumers:      -1,
		}
	}
	ingress := base(StreamIngress, PrefixIngress, "accepted submissions by the applicant's place; the router consumes them")
	ingress.Retention = jetstream.WorkQueuePolicy
	inbox := base(StreamInbox, PrefixInbox, "routed submissions by the destination's home region")
	events := base(StreamEvents, PrefixEvents, "every security event token of a case; the source of truth for status")
	events.MaxAge = c.EventsMaxAge
	// Evidence: no single event disappears except by age.
	events.DenyDelete = true
	events.DenyPurge = true
	// A case's events are read in one batch where the only replica answers.
	events.AllowDirect = true
	dead := base(StreamDead, PrefixDead, "what could not be routed or delivered, with reason headers, for re-drive")
	callbacks := base(StreamCallbacks, PrefixCallback, "callbacks owed to receivers and senders; the delivery role consumes them")
	callbacks.Retention = jetstream.WorkQueuePolicy
	registry := base(StreamRegistry, PrefixRegistry, "registry changes: the routing state of each destination and reference imports; the sequence is the registry revision")
	registry.MaxAge = 0
	registry.MaxMsgsPerSubject = 1
	registry.Duplicates = 0
	return []jetstream.StreamConfig{ingress, inbox, events, dead, callbacks, registry}, nil
}

// Ensure creates the streams INGRESS, INBOX, EVENTS, DEAD, CALLBACKS and
// REGISTRY,
// the object store BucketPayloads and the key-value bucket BucketState, or
// updates them to cfg. It is idempotent; several processes may call it at
// once. It never lowers the replicas of what exists: a process or tool
// started with fewer replicas than a cluster's streams keeps theirs, and
// scaling down is an operator's deliberate act.
func (b *Bus) Ensure(ctx context.Context, cfg TopologyConfig) error {
	streams, err := cfg.Streams()
	if err != nil {
		return fmt.Errorf("ensure: %w", err)
	}
	cfg, _ = cfg.withDefaults()
	for _, sc := range streams {
		if err := b.ensureStream(ctx, sc); err != nil {
			return err
		}
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	replicas := cfg.Replicas
	if n, err := b.replicasOf(ctx, StreamPayloads); err != nil {
		return fmt.Errorf("ensure object store %s: %w", BucketPayloads, err)
	} else if n > replicas {
		replicas = n
	}
	obs, err := b.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      BucketPayloads,
		Description: "sealed payloads and attachments, chunked",
		TTL:         cfg.PayloadMaxAge,
		Storage:     storage,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure object store %s: %w", BucketPayloads, err)
	}
	replicas = cfg.Replicas
	if n, err := b.replicasOf(ctx, stateStream); err != nil {
		return fmt.Errorf("ensure key-value bucket %s: %w", BucketState, err)
	} else if n > replicas {
		replicas = n
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketState,
		Description: "in-flight submission state",
		History:     1,
		TTL:         cfg.PayloadMaxAge,
		Storage:     storage,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure key-value bucket %s: %w", BucketState, err)
	}
	b.mu.Lock()
	b.objects, b.state = obs, kv
	b.mu.Unlock()
	return nil
}

// ensureStream creates sc, or updates the stream to it keeping a higher
// replica count.
func (b *Bus) ensureStream(ctx context.Context, sc jetstream.StreamConfig) error {
	n, err := b.replicasOf(ctx, sc.Name)
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	if n > sc.Replicas {
		sc.Replicas = n
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
	}
	return nil
}

// replicasOf returns the replicas of stream name, 0 when it does not exist.
func (b *Bus) replicasOf(ctx context.Context, name string) (int, error) {
	st, err := b.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().Config.Replicas, nil
}
