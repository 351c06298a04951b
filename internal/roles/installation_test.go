package roles

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/ledger"
)

// carry publishes an event to EVENTS, as a gateway of the bus's
// installation would have.
func carry(t *testing.T, b *bus.Bus) {
	t.Helper()
	subj, err := bus.EventsSubject(uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().Publish(context.Background(), subj, []byte("event")); err != nil {
		t.Fatal(err)
	}
}

func installations(t *testing.T, b *bus.Bus, st store.Store) (busID, storeID string) {
	t.Helper()
	ctx := context.Background()
	busID, _, err := b.Installation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	storeID, _, err = st.Installation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return busID, storeID
}

// TestInstallation runs the check for every pairing of a store and a bus
// a process can be started with.
func TestInstallation(t *testing.T) {
	for _, be := range flowtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			log := slog.New(slog.DiscardHandler)
			check := func(b *bus.Bus, st store.Store) error { return checkInstallation(ctx, b, st, log) }

			t.Run("a new installation records one id in both", func(t *testing.T) {
				b, _ := bustest.Bus(t)
				st := be.Open(t)
				if err := check(b, st); err != nil {
					t.Fatal(err)
				}
				busID, storeID := installations(t, b, st)
				if busID == "" || busID != storeID {
					t.Fatalf("bus %q, store %q: want one id", busID, storeID)
				}
				carry(t, b)
				if err := check(b, st); err != nil {
					t.Fatalf("again: %v", err)
				}
				if b2, s2 := installations(t, b, st); b2 != busID || s2 != storeID {
					t.Fatalf("again: bus %q, store %q; want %q", b2, s2, busID)
				}
			})
			t.Run("an empty store for a bus that carried submissions is refused", func(t *testing.T) {
				b, _ := bustest.Bus(t)
				if err := check(b, be.Open(t)); err != nil {
					t.Fatal(err)
				}
				carry(t, b)
				other := be.Open(t)
				err := check(b, other)
				if err == nil || !strings.Contains(err.Error(), "store is empty") {
					t.Fatalf("check: %v; want the empty store refused", err)
				}
				if _, storeID := installations(t, b, other); storeID != "" {
					t.Fatalf("refused store recorded installation %q", storeID)
				}
			})
			t.Run("an installation from before ids records one id in both", func(t *testing.T) {
				b, _ := bustest.Bus(t)
				st := be.Open(t)
				carry(t, b)
				if err := st.CreateSubmission(ctx, store.Submission{ID: uuid.NewString(), CaseID: uuid.NewString(), DestinationID: uuid.NewString(),
					Progress: sealed.Progress{Status: sealed.Incomplete}, AnnouncedAttachments: []string{}}); err != nil {
					t.Fatal(err)
				}
				if err := check(b, st); err != nil {
					t.Fatal(err)
				}
				if busID, storeID := installations(t, b, st); busID == "" || busID != storeID {
					t.Fatalf("bus %q, store %q: want one id", busID, storeID)
				}
			})
			t.Run("a new bus takes the store's id", func(t *testing.T) {
				st := be.Open(t)
				if _, err := st.RecordInstallation(ctx, "installation-a"); err != nil {
					t.Fatal(err)
				}
				b, _ := bustest.Bus(t)
				if err := check(b, st); err != nil {
					t.Fatal(err)
				}
				if busID, _ := installations(t, b, st); busID != "installation-a" {
					t.Fatalf("bus %q, want installation-a", busID)
				}
			})
			t.Run("a store of another installation is refused", func(t *testing.T) {
				b, _ := bustest.Bus(t)
				if err := check(b, be.Open(t)); err != nil {
					t.Fatal(err)
				}
				st := be.Open(t)
				if _, err := st.RecordInstallation(ctx, "installation-b"); err != nil {
					t.Fatal(err)
				}
				err := check(b, st)
				if err == nil || !strings.Contains(err.Error(), "the store belongs to installation installation-b") {
					t.Fatalf("check: %v; want the store refused", err)
				}
			})
		})
	}
}

// TestLedgerRefusesAnotherStore starts a ledger against an empty store
// while the bus carries another store's submissions: it ends with the
// reason before consuming anything, where it would have acknowledged every
// event as one of an unknown submission.
func TestLedgerRefusesAnotherStore(t *testing.T) {
	b, _ := bustest.Bus(t)
	if err := checkInstallation(context.Background(), b, flowtest.OpenSQLite(t), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	carry(t, b)
	r := &Roles{Bus: b, Store: flowtest.OpenSQLite(t), Key: flowtest.Signer(t), PublicURL: "https://amtsbote.example",
		Log: slog.New(slog.DiscardHandler), Ledger: true}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "store is empty") {
		t.Fatalf("run: %v; want the store refused", err)
	}
	if _, err := b.JetStream().Consumer(ctx, bus.StreamEvents, ledger.DurableEvents); err == nil {
		t.Error("the ledger's consumer exists")
	}
}
