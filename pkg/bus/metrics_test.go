package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// TestCollector reads the figures of a real JetStream: a message waiting
// for a consumer that does not take it, and dead letters by reason.
func TestCollector(t *testing.T) {
	b, _ := bustest.Bus(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(bus.NewCollector(b))

	publish(t, b, ingressSubject(t), "s1")
	publish(t, b, ingressSubject(t), "s2")
	startConsume(t, b, bus.ConsumerConfig{Stream: bus.StreamIngress, Durable: "router", BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
		func(ctx context.Context, m *bus.Message) error {
			return bus.PermanentReason("destination-inactive", errors.New("inactive"))
		})
	deadLetter(t, b, "destination-inactive")
	settled(t, b, bus.StreamIngress, "router")
	// An ephemeral consumer's random name is no series.
	if _, err := b.JetStream().CreateConsumer(testContext(t), bus.StreamEvents, jetstream.ConsumerConfig{InactiveThreshold: time.Minute}); err != nil {
		t.Fatal(err)
	}

	want := `
# HELP amtsbote_dead_letters Dead letters waiting in the DEAD stream for a re-drive, by reason.
# TYPE amtsbote_dead_letters gauge
amtsbote_dead_letters{reason="destination-inactive"} 2
amtsbote_dead_letters{reason="malformed-event"} 0
amtsbote_dead_letters{reason="max-deliver"} 0
amtsbote_dead_letters{reason="permanent"} 0
# HELP amtsbote_jetstream_up 1 when the last scrape read every stream and consumer of Amtsbote, else 0: the figures not read are those of their last read.
# TYPE amtsbote_jetstream_up gauge
amtsbote_jetstream_up 1
# HELP amtsbote_jetstream_consumer_pending_messages Messages of a consumer's filter not yet delivered to it.
# TYPE amtsbote_jetstream_consumer_pending_messages gauge
amtsbote_jetstream_consumer_pending_messages{consumer="router",stream="INGRESS"} 0
`
	eventually(t, 10*time.Second, func() error {
		return testutil.GatherAndCompare(reg, strings.NewReader(want),
			"amtsbote_dead_letters", "amtsbote_jetstream_up", "amtsbote_jetstream_consumer_pending_messages")
	})
	for stream, msgs := range map[string]float64{bus.StreamIngress: 0, bus.StreamDead: 2, bus.StreamCallbacks: 0} {
		got, err := gauge(reg, "amtsbote_jetstream_stream_messages", stream)
		if err != nil || got != msgs {
			t.Errorf("%s messages = %v (%v), want %v", stream, got, err, msgs)
		}
	}
	if err := b.Ready(testContext(t)); err != nil {
		t.Errorf("ready: %v", err)
	}
}

// TestReadyWithoutServer: a bus whose server is gone is not ready, and
// the collector reports it cannot read the streams, keeping the figures
// of its last read: a dead letter and a waiting event are still there,
// and the alerts on them must not resolve while NATS is out.
func TestReadyWithoutServer(t *testing.T) {
	b, n := bustest.Bus(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(bus.NewCollector(b))
	ctx := testContext(t)
	if _, err := b.JetStream().Publish(ctx, bus.PrefixDead+"."+bus.ReasonPermanent, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := b.Enqueue(ctx, set.Claims{JTI: uuid.NewString()}); err != nil {
		t.Fatal(err)
	}
	value := func(name, label, of string) float64 {
		t.Helper()
		v, err := labelled(reg, name, label, of)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if up, dead := value("amtsbote_jetstream_up", "", ""), value("amtsbote_dead_letters", "reason", bus.ReasonPermanent); up != 1 || dead != 1 {
		t.Fatalf("with the server: up %v, %v dead letters; want 1, 1", up, dead)
	}

	n.Shutdown()
	eventually(t, 10*time.Second, func() error {
		// A request made just before the connection noticed the loss
		// waits for a reconnect until its context ends.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if b.Ready(ctx) == nil {
			return errors.New("ready without a server")
		}
		return nil
	})
	if v := value("amtsbote_jetstream_up", "", ""); v != 0 {
		t.Errorf("amtsbote_jetstream_up = %v, want 0", v)
	}
	if v := value("amtsbote_dead_letters", "reason", bus.ReasonPermanent); v != 1 {
		t.Errorf("without the server: %v dead letters, want the last read's 1", v)
	}
	if v := value("amtsbote_jetstream_stream_messages", "stream", bus.StreamDead); v != 1 {
		t.Errorf("without the server: DEAD holds %v, want the last read's 1", v)
	}
	if v := value("amtsbote_outbox_events", "", ""); v != 1 {
		t.Errorf("without the server: %v events waiting, want the last read's 1", v)
	}
	first := value("amtsbote_outbox_oldest_age_seconds", "", "")
	time.Sleep(100 * time.Millisecond)
	if again := value("amtsbote_outbox_oldest_age_seconds", "", ""); again <= first {
		t.Errorf("without the server the oldest event's age stays at %v s (then %v s); it waits on", first, again)
	}
}

// gauge reads the gauge name of stream (any when "") from reg.
func gauge(reg *prometheus.Registry, name, stream string) (float64, error) {
	return labelled(reg, name, "stream", stream)
}

// labelled reads the gauge name whose label has the value of (any
// series when of is "") from reg.
func labelled(reg *prometheus.Registry, name, label, of string) (float64, error) {
	fams, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			has := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					has = lp.GetValue()
				}
			}
			if has == of {
				return m.GetGauge().GetValue(), nil
			}
		}
	}
	return 0, fmt.Errorf("no %s with %s %q", name, label, of)
}

// TestCollectorOutbox reads the outbox's backlog without any signer: the
// events waiting and how long the oldest has waited, both 0 once signed.
func TestCollectorOutbox(t *testing.T) {
	b, _ := bustest.Bus(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(bus.NewCollector(b))
	ctx := testContext(t)

	value := func(name string) float64 {
		t.Helper()
		v, err := gauge(reg, name, "")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if n, age := value("amtsbote_outbox_events"), value("amtsbote_outbox_oldest_age_seconds"); n != 0 || age != 0 {
		t.Fatalf("empty outbox: %v events, oldest %v s; want 0, 0", n, age)
	}
	var jtis []string
	for range 3 {
		jti := uuid.NewString()
		jtis = append(jtis, jti)
		if err := b.Enqueue(ctx, set.Claims{JTI: jti}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n, age := value("amtsbote_outbox_events"), value("amtsbote_outbox_oldest_age_seconds"); n != 3 || age < 0.05 || age > 60 {
		t.Fatalf("three waiting: %v events, oldest %v s; want 3, at least 0.05", n, age)
	}
	for _, jti := range jtis {
		if err := b.DeleteState(ctx, sealed.OutboxKey(jti)); err != nil {
			t.Fatal(err)
		}
	}
	if n, age := value("amtsbote_outbox_events"), value("amtsbote_outbox_oldest_age_seconds"); n != 0 || age != 0 {
		t.Fatalf("all signed: %v events, oldest %v s; want 0, 0", n, age)
	}

	// An earlier release deleted signed entries with a key-value purge,
	// whose markers stay: they are no backlog, and they are cleared.
	kv, err := b.JetStream().KeyValue(ctx, bus.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		jti := uuid.NewString()
		if err := b.Enqueue(ctx, set.Claims{JTI: jti}); err != nil {
			t.Fatal(err)
		}
		if err := kv.Purge(ctx, sealed.OutboxKey(jti)); err != nil {
			t.Fatal(err)
		}
	}
	waiting := uuid.NewString()
	if err := b.Enqueue(ctx, set.Claims{JTI: waiting}); err != nil {
		t.Fatal(err)
	}
	if n := value("amtsbote_outbox_events"); n != 1 {
		t.Fatalf("one waiting behind two markers: %v events, want 1", n)
	}
	if err := b.DeleteState(ctx, sealed.OutboxKey(waiting)); err != nil {
		t.Fatal(err)
	}
	if n, age := value("amtsbote_outbox_events"), value("amtsbote_outbox_oldest_age_seconds"); n != 0 || age != 0 {
		t.Fatalf("markers cleared, all signed: %v events, oldest %v s; want 0, 0", n, age)
	}
	if up := value("amtsbote_jetstream_up"); up != 1 {
		t.Fatalf("up = %v", up)
	}
}
