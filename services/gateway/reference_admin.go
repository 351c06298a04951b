package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// RevisionHeader carries the registry revision an admin write produced;
// a process whose registry revision (routesync) has reached it routes
// with the change.
const RevisionHeader = "Amtsbote-Registry-Revision"

// The operator imports reference data by POSTing the official file as the
// body: /admin/v1/import/gv100ad (Destatis GV100AD), /admin/v1/import/leika
// (the LeiKa catalogue as CSV) and /admin/v1/import/plz (postcodes as
// CSV). The body is parsed as it streams in, within Config.MaxImport; a
// bad line aborts with its number and changes nothing.

func (g *Gateway) referenceStore() (store.Reference, error) {
	if g.routing.ref == nil {
		return nil, problem.Unavailable("imports need a store that keeps reference data")
	}
	return g.routing.ref, nil
}

// importProblem turns a parse error of an imported file into a problem.
func importProblem(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problem.BodyTooLarge(mbe.Limit)
	}
	line := 0
	var ale *ars.LineError
	var lle *leika.LineError
	switch {
	case errors.As(err, &ale):
		line = ale.Line
	case errors.As(err, &lle):
		line = lle.Line
	case errors.Is(err, ars.ErrFormat), errors.Is(err, leika.ErrFormat):
	default:
		return err
	}
	p := problem.Invalid("body", err.Error())
	if line > 0 {
		p = p.With("line", line)
	}
	return p
}

func (g *Gateway) handleImportGV100AD(w http.ResponseWriter, r *http.Request, p Principal) error {
	ref, err := g.referenceStore()
	if err != nil {
		return err
	}
	d, err := ars.ParseGV100AD(http.MaxBytesReader(w, r.Body, g.routing.max))
	if err != nil {
		return importProblem(err)
	}
	res, err := ref.ImportAreas(r.Context(), p.Subject, d)
	if errors.Is(err, store.ErrStale) {
		return problem.Conflict("body", err.Error())
	}
	if err != nil {
		return err
	}
	g.publishReference(w, r)
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (g *Gateway) handleImportLeika(w http.ResponseWriter, r *http.Request, p Principal) error {
	ref, err := g.referenceStore()
	if err != nil {
		return err
	}
	services, err := leika.ParseCatalogue(http.MaxBytesReader(w, r.Body, g.routing.max))
	if err != nil {
		return importProblem(err)
	}
	res, err := ref.ImportCatalogue(r.Context(), p.Subject, services)
	if err != nil {
		return err
	}
	g.publishReference(w, r)
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (g *Gateway) handleImportPLZ(w http.ResponseWriter, r *http.Request, p Principal) error {
	ref, err := g.referenceStore()
	if err != nil {
		return err
	}
	codes, err := ars.ParsePLZ(http.MaxBytesReader(w, r.Body, g.routing.max))
	if err != nil {
		return importProblem(err)
	}
	res, err := ref.ImportPostcodes(r.Context(), p.Subject, codes)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// publishWait bounds how long a write waits for its announcement to come
// back from the bus, so that the writer's next request routes with it.
const publishWait = 5 * time.Second

// publishReference announces an import to every process. The import is
// stored already; a failed announcement is logged, and processes catch up
// at their next resync or start.
func (g *Gateway) publishReference(w http.ResponseWriter, r *http.Request) {
	if g.routing.sync == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), publishWait)
	defer cancel()
	rev, err := g.routing.sync.PublishReference(ctx)
	if err != nil {
		g.log.ErrorContext(r.Context(), "announce reference import", "err", err)
		return
	}
	w.Header().Set(RevisionHeader, strconv.FormatUint(rev, 10))
}

// prepareRoutes brings the registry up to the latest revision before a
// destination write is checked against it. Within a second; past that
// the check runs against what the process holds.
func (g *Gateway) prepareRoutes(ctx context.Context) error {
	if g.routing.sync == nil {
		return nil
	}
	if err := g.routing.sync.EnsureLoaded(ctx); err != nil {
		return fmt.Errorf("load routing registry: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := g.routing.sync.CatchUp(cctx); err != nil {
		g.log.WarnContext(ctx, "routing registry behind; checking routes against the revision held", "revision", g.routing.sync.Revision(), "err", err)
	}
	return nil
}

// checkRoutes refuses a destination state whose routes conflict with
// another destination's: same service, same region, overlapping validity.
// The 409 names the other destination (extension
// conflictingDestinationId) and the field of the offending region.
func (g *Gateway) checkRoutes(ctx context.Context, d store.Destination) error {
	if g.routing.sync == nil {
		return nil
	}
	err := g.routing.sync.Check(ctx, d)
	var ce *routing.ConflictError
	var re *routing.RouteError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		field := "services"
		for i, s := range d.Services {
			id, _ := routing.ServiceID(s.Identifier)
			for j, region := range s.Regions {
				if id == ce.Route.Service && region == ce.Route.Region {
					field = fmt.Sprintf("services[%d].regions[%d]", i, j)
				}
			}
		}
		return problem.Conflict(field, fmt.Sprintf("destination %s already serves %s in %s at an overlapping time (%s); end one route before the other starts",
			ce.Other.DestinationID, ce.Route.Service, ce.Route.Region, ce.Other)).
			With("conflictingDestinationId", ce.Other.DestinationID)
	case errors.As(err, &re):
		return problem.Invalid("services", re.Error())
	}
	return err
}

// publishDestination announces destination id's stored state after a
// write and sets the revision header. The write has happened: a failed
// announcement is logged, and processes catch up at their next resync.
func (g *Gateway) publishDestination(w http.ResponseWriter, r *http.Request, id string) {
	if g.routing.sync == nil {
		return
	}
	d, err := g.store.Destination(r.Context(), id)
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), publishWait)
		defer cancel()
		var rev uint64
		if rev, err = g.routing.sync.PublishDestination(ctx, d); err == nil {
			w.Header().Set(RevisionHeader, strconv.FormatUint(rev, 10))
			return
		}
	}
	g.log.ErrorContext(r.Context(), "announce destination change", "destination_id", id, "err", err)
}

// coverageView is the answer of GET /admin/v1/coverage.
type coverageView struct {
	LeikaKey          string         `json:"leikaKey"`
	At                time.Time      `json:"at"`
	Stand             string         `json:"stand"`
	Gemeinden         int            `json:"gemeinden"`
	Covered           int            `json:"covered"`
	Population        int            `json:"population"`
	CoveredPopulation int            `json:"coveredPopulation"`
	Lands             []landCoverage `json:"lands"`
}

type landCoverage struct {
	Land              string          `json:"land"`
	Name              string          `json:"name"`
	Gemeinden         int             `json:"gemeinden"`
	Covered           int             `json:"covered"`
	Population        int             `json:"population"`
	CoveredPopulation int             `json:"coveredPopulation"`
	Uncovered         []uncoveredArea `json:"uncovered"`
}

type uncoveredArea struct {
	ARS        string `json:"ars"`
	Name       string `json:"name"`
	Population int    `json:"population"`
}

// handleCoverage answers GET /admin/v1/coverage?leikaKey=…: per Land, how
// many Gemeinden and inhabitants resolve to a destination for the service
// now (or at the RFC 3339 time in at), and which Gemeinden do not.
func (g *Gateway) handleCoverage(w http.ResponseWriter, r *http.Request, _ Principal) error {
	q := r.URL.Query()
	key, _, err := queryParam(q, "leikaKey")
	if err != nil {
		return err
	}
	if key == "" {
		return problem.InvalidRequest("leikaKey", "leikaKey is required")
	}
	service, err := leika.ParseKey(key)
	if err != nil {
		return problem.Invalid("leikaKey", err.Error())
	}
	at := g.now()
	if s, _, err := queryParam(q, "at"); err != nil {
		return err
	} else if s != "" {
		if at, err = time.Parse(time.RFC3339, s); err != nil {
			return problem.Invalid("at", fmt.Sprintf("at %q is not an RFC 3339 time", s))
		}
	}
	reg, err := g.registry(r.Context())
	if err != nil {
		return err
	}
	dir := reg.Reference().Directory()
	if dir == nil {
		return problem.Conflict("", "coverage needs the area directory; import a GV100AD file first")
	}
	c, err := reg.Coverage(r.Context(), string(service), at)
	if err != nil {
		return err
	}
	out := coverageView{LeikaKey: string(service), At: at.UTC(), Stand: dir.Date().Format(time.DateOnly),
		Gemeinden: c.Gemeinden, Covered: c.Covered, Population: c.Population, CoveredPopulation: c.CoveredPopulation}
	for _, l := range c.Lands {
		lv := landCoverage{Land: l.Land, Name: l.Name, Gemeinden: l.Gemeinden, Covered: l.Covered,
			Population: l.Population, CoveredPopulation: l.CoveredPopulation, Uncovered: make([]uncoveredArea, 0, len(l.Uncovered))}
		for _, a := range l.Uncovered {
			lv.Uncovered = append(lv.Uncovered, uncoveredArea{ARS: a.ARS, Name: a.Name, Population: a.Population})
		}
		out.Lands = append(out.Lands, lv)
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, out)
	return nil
}
