package admin

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// The operator imports reference data by POSTing the official file as the
// body: /admin/v1/import/gv100ad (Destatis GV100AD), /admin/v1/import/leika
// (the LeiKa catalogue as CSV) and /admin/v1/import/plz (postcodes as
// CSV). The body is parsed as it streams in, within Config.MaxImport; a
// bad line aborts with its number and changes nothing.

func (a *API) handleImportGV100AD(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := httpapi.RequireIdentity(r); err != nil {
		return err
	}
	d, err := ars.ParseGV100AD(http.MaxBytesReader(w, r.Body, a.maxImport))
	if err != nil {
		return a.imported(w, nil, 0, registry.ImportProblem(err))
	}
	res, err := a.registry.ImportAreas(r.Context(), p.Subject, d)
	return a.imported(w, res.Result, res.Revision, err)
}

func (a *API) handleImportLeika(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := httpapi.RequireIdentity(r); err != nil {
		return err
	}
	services, err := leika.ParseCatalogue(http.MaxBytesReader(w, r.Body, a.maxImport))
	if err != nil {
		return a.imported(w, nil, 0, registry.ImportProblem(err))
	}
	res, err := a.registry.ImportCatalogue(r.Context(), p.Subject, services)
	return a.imported(w, res.Result, res.Revision, err)
}

func (a *API) handleImportPLZ(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if err := httpapi.RequireIdentity(r); err != nil {
		return err
	}
	codes, err := ars.ParsePLZ(http.MaxBytesReader(w, r.Body, a.maxImport))
	if err != nil {
		return a.imported(w, nil, 0, registry.ImportProblem(err))
	}
	res, err := a.registry.ImportPostcodes(r.Context(), p.Subject, codes)
	return a.imported(w, res.Result, res.Revision, err)
}

// imported answers an import with its result and revision.
func (a *API) imported(w http.ResponseWriter, result any, rev uint64, err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problem.BodyTooLarge(mbe.Limit)
	}
	if err != nil {
		return err
	}
	setRevision(w, rev)
	httpapi.WriteJSON(w, http.StatusOK, result)
	return nil
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
func (a *API) handleCoverage(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	q, err := httpapi.Query(r)
	if err != nil {
		return err
	}
	key, _, err := httpapi.QueryParam(q, "leikaKey")
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
	at := a.now()
	if s, _, err := httpapi.QueryParam(q, "at"); err != nil {
		return err
	} else if s != "" {
		if at, err = time.Parse(time.RFC3339, s); err != nil {
			return problem.Invalid("at", fmt.Sprintf("at %q is not an RFC 3339 time", s))
		}
	}
	if a.routes == nil {
		return problem.Unavailable("coverage needs a store that keeps reference data")
	}
	reg := a.routes
	if err := reg.EnsureLoaded(r.Context()); err != nil {
		return fmt.Errorf("load routing registry: %w", err)
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
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
