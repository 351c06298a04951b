package routesync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// ErrNoDirectory means no area directory has been imported yet.
var ErrNoDirectory = errors.New("no area directory imported")

// Reference is the reference data a process holds: the current area
// directory, the areas retired by later imports, and the LeiKa catalogue.
// It is immutable.
type Reference struct {
	dir      *ars.Directory
	retired  map[string][]store.Area // by ARS digits, deepest level first
	byAGS    map[string]store.Area   // retired Gemeinden by AGS
	services map[leika.Key]string
}

// readReference loads the reference data from the store.
func readReference(ctx context.Context, st store.Reference) (*Reference, error) {
	r := &Reference{retired: make(map[string][]store.Area), byAGS: make(map[string]store.Area), services: make(map[leika.Key]string)}
	var current []ars.Area
	var stand time.Time
	err := st.Areas(ctx, func(a store.Area) error {
		if a.Retired != nil {
			list := r.retired[a.ARS]
			// Areas come in level order; keep the deepest first.
			r.retired[a.ARS] = append([]store.Area{a}, list...)
			if a.Level == ars.Gemeinde {
				r.byAGS[a.AGS] = a
			}
			return nil
		}
		if a.Stand.After(stand) {
			stand = a.Stand
		}
		current = append(current, a.Area)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read areas: %w", err)
	}
	if len(current) > 0 {
		if r.dir, err = ars.NewDirectory(stand, current); err != nil {
			return nil, fmt.Errorf("read areas: %w", err)
		}
	}
	err = st.Catalogue(ctx, func(e store.CatalogueEntry) error {
		r.services[e.Key] = e.Name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read catalogue: %w", err)
	}
	return r, nil
}

// Directory returns the current area directory, or nil when none has been
// imported.
func (r *Reference) Directory() *ars.Directory { return r.dir }

// Retired returns the most specific retired area under the key a, looking
// no deeper than a's level.
func (r *Reference) Retired(a ars.ARS) (store.Area, bool) {
	for _, x := range r.retired[a.String()] {
		if x.Level <= a.Level() {
			return x, true
		}
	}
	return store.Area{}, false
}

// RetiredAGS returns the retired Gemeinde with AGS g.
func (r *Reference) RetiredAGS(g ars.AGS) (store.Area, bool) {
	a, ok := r.byAGS[g.String()]
	return a, ok
}

// Service returns the catalogue name of a LeiKa service.
func (r *Reference) Service(k leika.Key) (string, bool) {
	n, ok := r.services[k]
	return n, ok
}

// Services returns the number of catalogue entries.
func (r *Reference) Services() int { return len(r.services) }

// RetiredArea returns the retired area (arsDigits, l).
func (r *Reference) RetiredArea(arsDigits string, l ars.Level) (store.Area, bool) {
	for _, x := range r.retired[arsDigits] {
		if x.Level == l {
			return x, true
		}
	}
	return store.Area{}, false
}
