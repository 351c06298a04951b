package routesync

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/problem"
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

// areaParams are the Routing API's area parameters: the pattern its spec
// gives each, and what a value names in a problem. A value of that form
// that does not parse (a Land code above 16, an area id of another
// service) names no area of ours: an unknown area, not a malformed request.
var areaParams = map[string]struct {
	form  *regexp.Regexp
	label string
}{
	"ars":    {regexp.MustCompile(`^(\d{2}|\d{3}|\d{5}|\d{9}|\d{12})$`), "ARS"},
	"ags":    {regexp.MustCompile(`^(\d{2}|\d{3}|\d{5}|\d{8})$`), "AGS"},
	"areaId": {regexp.MustCompile(`^\d+$`), "area"},
}

// Place turns an area parameter of the Routing API (ars, ags or areaId)
// into the key to resolve: the area's key at the level the directory
// knows it. Without an imported directory the key is taken as given. A
// malformed value is a 400 problem naming param; an area the directory
// lacks is a 422, naming the import that retired it when one did.
func (ref *Reference) Place(param, value string) (ars.ARS, error) {
	dir := ref.Directory()
	p := areaParams[param]
	unknown := func() error { return notInDirectory(param, p.label+" "+value, dir) }
	malformed := func(err error) error {
		if dir != nil && p.form != nil && p.form.MatchString(value) {
			return unknown()
		}
		return problem.Invalid(param, err.Error())
	}
	switch param {
	case "ars":
		a, err := ars.Parse(value)
		if err != nil {
			return ars.ARS{}, malformed(err)
		}
		if dir == nil {
			return a, nil
		}
		if area, ok := dir.Find(a); ok {
			return area.Key(), nil
		}
		if old, ok := ref.Retired(a); ok {
			return ars.ARS{}, retiredProblem("ars", value, old, dir)
		}
		return ars.ARS{}, unknown()
	case "ags":
		k, err := ars.ParseAGS(value)
		if err != nil {
			return ars.ARS{}, malformed(err)
		}
		if dir == nil {
			if a, ok := k.ARS(); ok {
				return a, nil
			}
			return ars.ARS{}, problem.Unavailable("an 8-digit ags needs the area directory; none is imported")
		}
		if area, ok := dir.ByAGS(k); ok {
			return area.Key(), nil
		}
		if k.Level() == ars.Gemeinde {
			if old, ok := ref.RetiredAGS(k); ok {
				return ars.ARS{}, retiredProblem("ags", value, old, dir)
			}
		} else if a, ok := k.ARS(); ok {
			if old, ok := ref.RetiredArea(a.String(), a.Level()); ok {
				return ars.ARS{}, retiredProblem("ags", value, old, dir)
			}
		}
		return ars.ARS{}, unknown()
	default:
		a, l, err := store.ParseAreaID(value)
		if err != nil {
			return ars.ARS{}, malformed(err)
		}
		if dir == nil {
			return ars.ARS{}, problem.Unavailable("areaId needs the area directory; none is imported")
		}
		if area, ok := dir.Get(a, l); ok {
			return area.Key(), nil
		}
		if old, ok := ref.RetiredArea(a.String(), l); ok {
			return ars.ARS{}, retiredProblem("areaId", value, old, dir)
		}
		return ars.ARS{}, unknown()
	}
}

func notInDirectory(field, what string, dir *ars.Directory) error {
	return problem.Unprocessable(field, fmt.Sprintf("%s is not in the area directory (Gebietsstand %s)", what, dir.Date().Format(time.DateOnly)))
}

// retiredProblem tells that an area key is retired, when and by which
// directory, and, for a Gemeinde whose AGS lives on, its current ARS.
func retiredProblem(field, value string, old store.Area, dir *ars.Directory) error {
	detail := fmt.Sprintf("%s %s names %s (%s), which the import of %s retired: it is not in the area directory of Gebietsstand %s",
		field, value, old.Name, old.Level, old.Retired.UTC().Format(time.DateOnly), old.RetiredStand.Format(time.DateOnly))
	p := problem.Unprocessable(field, detail).
		With("retired", old.Retired.UTC().Format(time.DateOnly)).
		With("retiredStand", old.RetiredStand.Format(time.DateOnly))
	if old.Level == ars.Gemeinde {
		if k, err := ars.ParseAGS(old.AGS); err == nil {
			if now, ok := dir.ByAGS(k); ok && now.ARS != old.ARS {
				p.Detail += fmt.Sprintf("; the Gemeinde with AGS %s has ARS %s now", old.AGS, now.ARS)
				p = p.With("currentArs", now.ARS)
			}
		}
	}
	return p
}

// CheckResponsible checks, for a submission to destination d naming the
// applicant's region ("DE" + ARS), that d is the destination responsible
// for service there at time at. It returns nil when it is; otherwise a 422
// problem on field "region" that names the responsible destination
// (extension responsibleDestinationId), or says that none is. d is the
// destination as stored: a state the registry has not seen yet (written
// past the registry operations) is announced first.
func (s *Syncer) CheckResponsible(ctx context.Context, service, region string, d store.Destination, at time.Time) error {
	if err := s.EnsureLoaded(ctx); err != nil {
		return fmt.Errorf("load routing registry: %w", err)
	}
	if e, ok := s.Destination(d.ID); !ok || e.UpdatedAt.Before(d.UpdatedAt) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.PublishDestination(pctx, d)
		cancel()
		if err != nil {
			s.log.ErrorContext(ctx, "announce destination change", "destination_id", d.ID, "err", err)
		}
	}
	reg := s
	a, err := ars.ParseRegion(region)
	if err != nil {
		return problem.Invalid("region", err.Error())
	}
	if a.Level() != ars.Bund {
		if _, err := reg.Reference().Place("ars", a.Code()); err != nil {
			if p, ok := problem.As(err); ok {
				return p.WithField("region")
			}
			return err
		}
	}
	m, ok := reg.Resolve(service, a, at)
	switch {
	case !ok:
		return problem.Unprocessable("region", fmt.Sprintf("no destination is responsible for %s in region %s", service, region))
	case m.Route.DestinationID != d.ID:
		return problem.Unprocessable("region", fmt.Sprintf("destination %s is responsible for %s in region %s (route for %s), not %s",
			m.Route.DestinationID, service, region, m.Route.Region, d.ID)).
			With("responsibleDestinationId", m.Route.DestinationID)
	}
	return nil
}

// CheckRegion checks that region, a route's region ("DE" and an ARS
// prefix), names an area of the current directory. It is a 422 problem on
// field naming the region, or, for a retired area, when and by which
// import it was retired and the Gemeinde's current ARS when its AGS lives
// on. Before a directory is imported every well-formed region passes; the
// region's form is the destination's own check.
func (s *Syncer) CheckRegion(ctx context.Context, field, region string) error {
	if err := s.EnsureLoaded(ctx); err != nil {
		return fmt.Errorf("load routing registry: %w", err)
	}
	ref := s.Reference()
	dir := ref.Directory()
	a, err := ars.ParseRegion(region)
	if dir == nil || err != nil || a.Level() == ars.Bund {
		return nil
	}
	if _, ok := dir.Get(a, a.Level()); ok {
		return nil
	}
	if old, ok := ref.RetiredArea(a.String(), a.Level()); ok {
		return retiredProblem(field, region, old, dir)
	}
	return notInDirectory(field, fmt.Sprintf("region %s", region), dir)
}
