package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Ready reports whether the bus can do its work: connected to NATS and
// JetStream answering.
func (b *Bus) Ready(ctx context.Context) error {
	if s := b.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats %s", strings.ToLower(s.String()))
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// collectTimeout bounds the JetStream requests of one scrape.
const collectTimeout = 5 * time.Second

var (
	descUp = prometheus.NewDesc("amtsbote_jetstream_up",
		"1 when the last scrape read every stream and consumer of Amtsbote, else 0: the figures not read are those of their last read.", nil, nil)
	descStreamMsgs = prometheus.NewDesc("amtsbote_jetstream_stream_messages",
		"Messages stored in an Amtsbote stream.", []string{"stream"}, nil)
	descStreamBytes = prometheus.NewDesc("amtsbote_jetstream_stream_bytes",
		"Bytes stored in an Amtsbote stream.", []string{"stream"}, nil)
	descStreamConsumers = prometheus.NewDesc("amtsbote_jetstream_stream_consumers",
		"Consumers of an Amtsbote stream.", []string{"stream"}, nil)
	descPending = prometheus.NewDesc("amtsbote_jetstream_consumer_pending_messages",
		"Messages of a consumer's filter not yet delivered to it.", []string{"stream", "consumer"}, nil)
	descAckPending = prometheus.NewDesc("amtsbote_jetstream_consumer_ack_pending_messages",
		"Messages delivered to a consumer and not yet acknowledged.", []string{"stream", "consumer"}, nil)
	descRedelivered = prometheus.NewDesc("amtsbote_jetstream_consumer_redelivered_messages",
		"Unacknowledged messages of a consumer that were delivered more than once.", []string{"stream", "consumer"}, nil)
	descDead = prometheus.NewDesc("amtsbote_dead_letters",
		"Dead letters waiting in the DEAD stream for a re-drive, by reason.", []string{"reason"}, nil)
	descOutbox = prometheus.NewDesc("amtsbote_outbox_events",
		"Amtsbote's own events accepted and waiting in the outbox for a signer.", nil, nil)
	descOutboxAge = prometheus.NewDesc("amtsbote_outbox_oldest_age_seconds",
		"Time since the outbox event waiting longest was written or claimed; 0 when none waits.", nil, nil)
)

// Collector reads, at every scrape, the figures of Amtsbote's streams
// (messages, bytes, consumers), of their consumers (pending,
// acknowledgement pending, redelivered) and the dead letters by reason.
// Labels are bounded: stream and consumer names are Amtsbote's and the
// operator's durables (ephemeral consumers are left out), reasons the
// tokens of ab.dead.<reason>. Register
// it once per deployment's scrape target (the ledger role does), since
// every process would report the same figures.
//
// A stream or the outbox that cannot be read is reported with the figures
// of its last read, and amtsbote_jetstream_up is 0: dropped series would
// resolve the alerts on dead letters and on a stalled outbox while NATS
// is out, although what they alert on is still there.
type Collector struct {
	b *Bus

	mu      sync.Mutex
	streams map[string][]prometheus.Metric // each stream's last complete read
	outbox  *outboxReading
}

type outboxReading struct {
	n      uint64
	oldest time.Time
}

// NewCollector returns a Collector of b's streams.
func NewCollector(b *Bus) *Collector {
	return &Collector{b: b, streams: map[string][]prometheus.Metric{}}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descStreamMsgs, descStreamBytes, descStreamConsumers, descPending, descAckPending, descRedelivered, descDead, descOutbox, descOutboxAge} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Without a connection every request would wait for the timeout: up
	// is 0 and every figure is the last read's.
	up := 0.0
	if c.b.nc.Status() == nats.CONNECTED {
		up = c.read(ctx)
	}
	for _, name := range collectedStreams {
		for _, m := range c.streams[name] {
			ch <- m
		}
	}
	if o := c.outbox; o != nil {
		age := 0.0
		if o.n > 0 && !o.oldest.IsZero() {
			age = max(time.Since(o.oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(o.n))
		ch <- prometheus.MustNewConstMetric(descOutboxAge, prometheus.GaugeValue, age)
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
}

// collectedStreams are the streams the Collector reports, in order.
var collectedStreams = []string{StreamIngress, StreamInbox, StreamEvents, StreamDead, StreamCallbacks, StreamRegistry}

// read replaces the last read of every stream and of the outbox that
// answers, and returns 1 when all did, else 0.
func (c *Collector) read(ctx context.Context) float64 {
	up := 1.0
	for _, name := range collectedStreams {
		if ms, err := c.readStream(ctx, name); err == nil {
			c.streams[name] = ms
		} else {
			up = 0
		}
	}
	if n, oldest, err := c.b.OutboxBacklog(ctx); err == nil {
		c.outbox = &outboxReading{n: n, oldest: oldest}
	} else {
		up = 0
	}
	return up
}

// readStream reads the figures of stream name, all or none.
func (c *Collector) readStream(ctx context.Context, name string) ([]prometheus.Metric, error) {
	s, err := c.b.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	var opts []jetstream.StreamInfoOpt
	if name == StreamDead {
		opts = append(opts, jetstream.WithSubjectFilter(PrefixDead+".>"))
	}
	info, err := s.Info(ctx, opts...)
	if err != nil {
		return nil, err
	}
	st := info.State
	ms := []prometheus.Metric{
		prometheus.MustNewConstMetric(descStreamMsgs, prometheus.GaugeValue, float64(st.Msgs), name),
		prometheus.MustNewConstMetric(descStreamBytes, prometheus.GaugeValue, float64(st.Bytes), name),
		prometheus.MustNewConstMetric(descStreamConsumers, prometheus.GaugeValue, float64(st.Consumers), name),
	}
	if name == StreamDead {
		// The bus's own reasons are always reported, so that a rule or a
		// panel on them finds a series before the first dead letter.
		dead := map[string]float64{ReasonPermanent: 0, ReasonMalformedEvent: 0, ReasonMaxDeliver: 0}
		for subject, n := range st.Subjects {
			if reason, ok := strings.CutPrefix(subject, PrefixDead+"."); ok && !strings.Contains(reason, ".") {
				dead[reason] += float64(n)
			}
		}
		for reason, n := range dead {
			ms = append(ms, prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, n, reason))
		}
	}
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			// An ephemeral consumer (a process following REGISTRY, a
			// listing) has a random name that would be a new series
			// at every start.
			continue
		}
		ms = append(ms,
			prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(ci.NumPending), name, ci.Name),
			prometheus.MustNewConstMetric(descAckPending, prometheus.GaugeValue, float64(ci.NumAckPending), name, ci.Name),
			prometheus.MustNewConstMetric(descRedelivered, prometheus.GaugeValue, float64(ci.NumRedelivered), name, ci.Name))
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, err
	}
	return ms, nil
}
