package subscriber_test

import (
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/services/subscriber"
)

// TestDeployPermissions holds deploy/nats/accounts.conf to the
// permissions bus.SubscriberPermissions gives, which dev and the tests
// enforce.
func TestDeployPermissions(t *testing.T) {
	t.Setenv("AMTSBOTE_NATS_PASSWORD", "a")
	t.Setenv("SUBSCRIBER_08315_NATS_PASSWORD", "b")
	opts, err := server.ProcessConfigFile("../../deploy/nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	const durable = "subscriber-08315"
	want := bus.SubscriberPermissions(durable)
	found := false
	for _, u := range opts.Users {
		switch u.Username {
		case "amtsbote":
			if u.Permissions != nil {
				t.Errorf("amtsbote is limited: %+v", u.Permissions)
			}
		case durable:
			found = true
			p := u.Permissions
			if p == nil || p.Publish == nil || p.Subscribe == nil {
				t.Fatalf("%s has no permissions", durable)
			}
			if !sameSet(p.Publish.Allow, want.Publish) || len(p.Publish.Deny) > 0 {
				t.Errorf("publish %q, want %q", p.Publish.Allow, want.Publish)
			}
			if !sameSet(p.Subscribe.Allow, want.Subscribe) || len(p.Subscribe.Deny) > 0 {
				t.Errorf("subscribe %q, want %q", p.Subscribe.Allow, want.Subscribe)
			}
		}
	}
	if !found {
		t.Fatalf("no user %s", durable)
	}
	for _, r := range []string{subscriber.ReasonSinkRefused, subscriber.ReasonMalformed} {
		if !slices.Contains(bus.SubscriberReasons, r) {
			t.Errorf("a subscriber may not write dead letters of reason %s", r)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
