package console

import (
	"net/http"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// kreisCoverage answers GET /admin/v1/coverage/kreise: the coverage of
// GET /admin/v1/coverage broken down to the Kreise of each Land, the
// picture the console draws.
type kreisCoverage struct {
	Service           string         `json:"service"`
	At                time.Time      `json:"at"`
	Stand             string         `json:"stand"`
	Population        int            `json:"population"`
	CoveredPopulation int            `json:"coveredPopulation"`
	Lands             []landKreise   `json:"lands"`
	Uncovered         []uncoveredGem `json:"uncovered"`
	// UncoveredTotal counts the uncovered Gemeinden; Uncovered lists the
	// first maxUncovered of them in directory order.
	UncoveredTotal int `json:"uncoveredTotal"`
}

type landKreise struct {
	Land              string        `json:"land"`
	Name              string        `json:"name"`
	Population        int           `json:"population"`
	CoveredPopulation int           `json:"coveredPopulation"`
	Kreise            []kreisFigure `json:"kreise"`
}

type kreisFigure struct {
	ARS               string `json:"ars"`
	Name              string `json:"name"`
	Gemeinden         int    `json:"gemeinden"`
	Covered           int    `json:"covered"`
	Population        int    `json:"population"`
	CoveredPopulation int    `json:"coveredPopulation"`
}

type uncoveredGem struct {
	ARS        string `json:"ars"`
	Name       string `json:"name"`
	Kreis      string `json:"kreis"`
	Population int    `json:"population"`
}

// maxUncovered bounds the uncovered Gemeinden one answer lists.
const maxUncovered = 500

// handleKreisCoverage resolves the service for every Gemeinde of the
// directory and sums by Kreis; a Gemeinde outside any Kreis of the
// directory counts towards its Land alone.
func (c *Console) handleKreisCoverage(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
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
	reg, err := c.registry(r)
	if err != nil {
		return err
	}
	dir := reg.Reference().Directory()
	if dir == nil {
		return problem.Conflict("", "coverage needs the area directory; import a GV100AD file first")
	}
	table := reg.Table()
	out := kreisCoverage{Service: service, At: at.UTC(), Stand: dir.Date().Format(time.DateOnly), Lands: []landKreise{}, Uncovered: []uncoveredGem{}}
	lands := map[string]*landKreise{}
	kreise := map[string]*kreisFigure{}
	for _, l := range dir.Areas(ars.Land) {
		out.Lands = append(out.Lands, landKreise{Land: l.ARS[:2], Name: l.Name, Kreise: []kreisFigure{}})
	}
	for i := range out.Lands {
		lands[out.Lands[i].Land] = &out.Lands[i]
	}
	for _, k := range dir.Areas(ars.Kreis) {
		if l := lands[k.ARS[:2]]; l != nil {
			l.Kreise = append(l.Kreise, kreisFigure{ARS: k.ARS[:5], Name: k.Name})
		}
	}
	for _, l := range out.Lands {
		for i := range lands[l.Land].Kreise {
			k := &lands[l.Land].Kreise[i]
			kreise[k.ARS] = k
		}
	}
	var uncovered []uncoveredGem
	for _, g := range dir.Areas(ars.Gemeinde) {
		l := lands[g.ARS[:2]]
		if l == nil {
			continue
		}
		k := kreise[g.ARS[:5]]
		_, _, ok := table.Resolve(service, g.Key(), at)
		l.Population += g.Population
		if k != nil {
			k.Gemeinden++
			k.Population += g.Population
		}
		if ok {
			l.CoveredPopulation += g.Population
			if k != nil {
				k.Covered++
				k.CoveredPopulation += g.Population
			}
			continue
		}
		uncovered = append(uncovered, uncoveredGem{ARS: g.ARS, Name: g.Name, Kreis: g.ARS[:5], Population: g.Population})
	}
	for _, l := range out.Lands {
		out.Population += l.Population
		out.CoveredPopulation += l.CoveredPopulation
	}
	out.UncoveredTotal = len(uncovered)
	// Directory order, so a Kreis's Gemeinden stay together.
	out.Uncovered = append(out.Uncovered, uncovered[:min(len(uncovered), maxUncovered)]...)
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
