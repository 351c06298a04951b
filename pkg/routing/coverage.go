package routing

import (
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
)

// Coverage tells, for one service at one time, how many Gemeinden and
// people resolve to a destination. Gemeinden here are all areas of the
// directory's Gemeinde level, gemeindefreie Gebiete included.
type Coverage struct {
	Service string
	At      time.Time
	Lands   []LandCoverage // in directory order
	// Totals over all Länder.
	Gemeinden, Covered            int
	Population, CoveredPopulation int
}

// LandCoverage is the coverage of a service in one Land.
type LandCoverage struct {
	Land                          string // two digits
	Name                          string
	Gemeinden, Covered            int
	Population, CoveredPopulation int
	// Uncovered lists the Gemeinden that resolve to no destination or to
	// one the caller does not count, in directory order.
	Uncovered []ars.Area
}

// Coverage resolves service at time at for every Gemeinde of d. A
// Gemeinde counts as covered when it resolves to a destination serves
// accepts; nil accepts every destination.
func (t *Table) Coverage(d *ars.Directory, service string, at time.Time, serves func(destinationID string) bool) Coverage {
	c := Coverage{Service: service, At: at}
	byLand := make(map[string]int)
	for _, l := range d.Areas(ars.Land) {
		byLand[l.ARS[:2]] = len(c.Lands)
		c.Lands = append(c.Lands, LandCoverage{Land: l.ARS[:2], Name: l.Name})
	}
	for _, g := range d.Areas(ars.Gemeinde) {
		lc := &c.Lands[byLand[g.ARS[:2]]]
		lc.Gemeinden++
		lc.Population += g.Population
		if r, _, ok := t.Resolve(service, g.Key(), at); ok && (serves == nil || serves(r.DestinationID)) {
			lc.Covered++
			lc.CoveredPopulation += g.Population
		} else {
			lc.Uncovered = append(lc.Uncovered, g)
		}
	}
	for _, lc := range c.Lands {
		c.Gemeinden += lc.Gemeinden
		c.Covered += lc.Covered
		c.Population += lc.Population
		c.CoveredPopulation += lc.CoveredPopulation
	}
	return c
}
