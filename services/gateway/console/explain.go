package console

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// maxPlaces bounds the areas a place name lists when it names several.
const maxPlaces = 20

// explanation answers GET /admin/v1/routing/explain.
type explanation struct {
	Service     string    `json:"service"`
	ServiceName string    `json:"serviceName,omitempty"`
	At          time.Time `json:"at"`
	// Place is the area resolved; nil when the name named several,
	// listed in Places to choose from.
	Place  *place  `json:"place"`
	Places []place `json:"places,omitempty"`
	// PlacesTotal is how many areas the name named, of which Places
	// lists the first maxPlaces.
	PlacesTotal int `json:"placesTotal,omitempty"`
	// Match is the route that resolved, nil when none did.
	Match *explainedRoute `json:"match"`
	// Routes are the service's routes whose region holds the place, most
	// specific first, each with what resolution made of it.
	Routes []explainedRoute `json:"routes"`
}

type place struct {
	ARS   string `json:"ars"`
	Name  string `json:"name"`
	Level string `json:"level"`
}

type explainedRoute struct {
	Region            string     `json:"region"`
	Level             string     `json:"level"`
	DestinationID     string     `json:"destinationId"`
	DestinationName   string     `json:"destinationName,omitempty"`
	DestinationStatus string     `json:"destinationStatus,omitempty"`
	ValidFrom         *time.Time `json:"validFrom,omitempty"`
	ValidUntil        *time.Time `json:"validUntil,omitempty"`
	// Outcome is "matched", "not valid then" or "a more specific route
	// matched".
	Outcome string `json:"outcome"`
}

// Outcomes of a route in an explanation.
const (
	outcomeMatched   = "matched"
	outcomeNotValid  = "not valid then"
	outcomeShadowed  = "a more specific route matched"
	outcomeUnmatched = "no route matched"
)

// serviceParam reads the required query parameter service, a LeiKa key
// or a service URN, as the routing table's service id.
func serviceParam(q url.Values) (string, error) {
	raw, _, err := httpapi.QueryParam(q, "service")
	if err != nil {
		return "", err
	}
	if raw == "" {
		return "", problem.InvalidRequest("service", "service is required: a LeiKa key or a service URN")
	}
	service, err := routing.ServiceID(raw)
	if err != nil {
		return "", problem.Invalid("service", err.Error())
	}
	return service, nil
}

// handleExplain answers which destination serves service (a LeiKa key or
// a service URN) in a place, given as ars or by name in place, at the RFC
// 3339 time at (default now), at which level it matched and which of the
// service's routes for the place it passed over and why.
func (c *Console) handleExplain(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	q, err := httpapi.Query(r)
	if err != nil {
		return err
	}
	service, err := serviceParam(q)
	if err != nil {
		return err
	}
	at, err := c.at(q)
	if err != nil {
		return err
	}
	arsParam, _, err := httpapi.QueryParam(q, "ars")
	if err != nil {
		return err
	}
	name, _, err := httpapi.QueryParam(q, "place")
	if err != nil {
		return err
	}
	if (arsParam == "") == (name == "") {
		return problem.InvalidRequest("ars", "give the place as either ars or place (a name), not both or neither")
	}
	reg, err := c.registry(r)
	if err != nil {
		return err
	}
	ref := reg.Reference()
	out := explanation{Service: service, At: at.UTC(), Routes: []explainedRoute{}}
	if ref != nil {
		if n, ok := ref.Service(leika.Key(service)); ok {
			out.ServiceName = n
		}
	}
	if ref == nil {
		return problem.Conflict("place", "this store keeps no reference data, so no place can be resolved")
	}
	var key ars.ARS
	if arsParam != "" {
		if key, err = ref.Place("ars", arsParam); err != nil {
			return err
		}
	} else {
		dir := ref.Directory()
		if dir == nil {
			return problem.Conflict("place", "a place name needs the area directory; import a GV100AD file first")
		}
		found := findPlaces(dir, name)
		if len(found) == 0 {
			return problem.Unprocessable("place", fmt.Sprintf("place %q names no area of the directory", name))
		}
		if len(found) > 1 {
			for _, a := range found[:min(len(found), maxPlaces)] {
				out.Places = append(out.Places, placeOf(a))
			}
			out.PlacesTotal = len(found)
			w.Header().Set("Cache-Control", "no-cache")
			httpapi.WriteJSON(w, http.StatusOK, out)
			return nil
		}
		key = found[0].Key()
	}
	p := place{ARS: key.String(), Level: key.Level().String()}
	if dir := ref.Directory(); dir != nil {
		if a, ok := dir.Get(key, key.Level()); ok {
			p = placeOf(a)
		}
	}
	out.Place = &p

	m, matched := reg.Resolve(service, key, at)
	var table []routing.Route
	if t := reg.Table(); t != nil {
		table = t.Routes(service)
	}
	for _, rt := range table {
		digits := strings.TrimPrefix(rt.Region, "DE")
		l, ok := ars.LevelOf(len(digits))
		if !ok || l > key.Level() || key.Prefix(l) != digits {
			continue
		}
		e := c.explainRoute(reg, rt, l)
		switch {
		case matched && rt.Region == m.Route.Region && rt.ValidFrom.Equal(m.Route.ValidFrom) && rt.DestinationID == m.Route.DestinationID:
			e.Outcome = outcomeMatched
		case !rt.ActiveAt(at):
			e.Outcome = outcomeNotValid
		case matched:
			e.Outcome = outcomeShadowed
		default:
			e.Outcome = outcomeUnmatched
		}
		out.Routes = append(out.Routes, e)
	}
	slices.SortStableFunc(out.Routes, func(a, b explainedRoute) int { return cmp.Compare(len(b.Region), len(a.Region)) })
	if matched {
		e := c.explainRoute(reg, m.Route, m.Level)
		e.Outcome = outcomeMatched
		out.Match = &e
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (c *Console) explainRoute(reg *routesync.Syncer, rt routing.Route, l ars.Level) explainedRoute {
	e := explainedRoute{Region: rt.Region, Level: l.String(), DestinationID: rt.DestinationID}
	if d, ok := reg.Destination(rt.DestinationID); ok {
		e.DestinationName, e.DestinationStatus = d.Name, string(d.Status)
	}
	if !rt.ValidFrom.IsZero() {
		t := rt.ValidFrom.UTC()
		e.ValidFrom = &t
	}
	if !rt.ValidUntil.IsZero() {
		t := rt.ValidUntil.UTC()
		e.ValidUntil = &t
	}
	return e
}

// at reads the optional RFC 3339 time in at; default now.
func (c *Console) at(q url.Values) (time.Time, error) {
	s, _, err := httpapi.QueryParam(q, "at")
	if err != nil || s == "" {
		return c.cfg.Now(), err
	}
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, problem.Invalid("at", fmt.Sprintf("at %q is not an RFC 3339 time", s))
	}
	return at, nil
}

// registry returns the loaded routing registry.
func (c *Console) registry(r *http.Request) (*routesync.Syncer, error) {
	if c.cfg.Routes == nil {
		return nil, problem.Unavailable("routing needs a store that keeps reference data")
	}
	if err := c.cfg.Routes.EnsureLoaded(r.Context()); err != nil {
		return nil, fmt.Errorf("load routing registry: %w", err)
	}
	return c.cfg.Routes, nil
}

func placeOf(a ars.Area) place {
	return place{ARS: a.ARS, Name: a.Name, Level: a.Level.String()}
}

// findPlaces returns the areas named name, ignoring case: those named
// exactly so, or so before the comma of an official name ("Freiburg im
// Breisgau, Stadt"), else those whose name contains it. Where exact ones
// are one area at several levels (a kreisfreie Stadt is a Kreis, a
// Gemeindeverband and a Gemeinde), the most specific stands for them.
func findPlaces(dir *ars.Directory, name string) []ars.Area {
	want := strings.ToLower(strings.TrimSpace(name))
	var exact, partial []ars.Area
	for _, a := range dir.All() {
		n := strings.ToLower(a.Name)
		short, _, _ := strings.Cut(n, ",")
		switch {
		case n == want || strings.TrimSpace(short) == want:
			exact = append(exact, a)
		case strings.Contains(n, want):
			partial = append(partial, a)
		}
	}
	if len(exact) == 0 {
		return partial
	}
	var out []ars.Area
	for _, a := range exact {
		within := func(b ars.Area) bool { return b.Level > a.Level && strings.HasPrefix(b.ARS, a.Key().Prefix(a.Level)) }
		if !slices.ContainsFunc(exact, within) {
			out = append(out, a)
		}
	}
	return out
}
