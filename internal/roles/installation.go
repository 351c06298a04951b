package roles

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// checkInstallation makes sure the store and the bus belong to one
// installation before any role touches either: a ledger projecting
// another installation's events would find none of their submissions and
// acknowledge every one, a gateway would list submissions no router sees.
// The first process of an installation records a new id in both; a store
// or bus from before ids were recorded takes the other's.
func checkInstallation(ctx context.Context, b *bus.Bus, st store.Store, log *slog.Logger) error {
	busID, busUsed, err := b.Installation(ctx)
	if err != nil {
		return err
	}
	storeID, storeUsed, err := st.Installation(ctx)
	if err != nil {
		return err
	}
	if busID == "" {
		id := storeID
		if id == "" {
			id = uuid.NewString()
		}
		if busID, err = b.RecordInstallation(ctx, id); err != nil {
			return err
		}
		log.InfoContext(ctx, "installation id recorded on the bus", "installation", busID)
	}
	switch {
	case storeID == busID:
		return nil
	case storeID != "":
		return fmt.Errorf("the store belongs to installation %s and the bus to installation %s: "+
			"the database and the NATS servers given are not those of one installation", storeID, busID)
	case busUsed && !storeUsed:
		return fmt.Errorf("the store is empty but the bus (installation %s) has carried submissions: "+
			"the database given is not the one this installation's gateways write to; "+
			"to start this store afresh all the same, insert %s into its table installation", busID, busID)
	}
	got, err := st.RecordInstallation(ctx, busID)
	if err != nil {
		return err
	}
	if got != busID {
		return fmt.Errorf("the store belongs to installation %s and the bus to installation %s", got, busID)
	}
	log.InfoContext(ctx, "installation id recorded in the store", "installation", busID)
	return nil
}
