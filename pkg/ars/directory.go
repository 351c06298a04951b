package ars

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// areaKey identifies an area: one ARS may name several levels at once (a
// kreisfreie Stadt is Kreis, Gemeindeverband and Gemeinde).
type areaKey struct {
	ars   string
	level Level
}

// Directory is the area directory of one Gebietsstand. It is immutable and
// safe for concurrent use. Methods returning areas return copies.
type Directory struct {
	date       time.Time
	areas      []Area // file order
	byKey      map[areaKey]int32
	byAGS      map[string]int32 // Gemeinde AGS
	byLevel    [Gemeinde + 1][]int32
	children   map[areaKey][]int32
	regions    []Region
	population int
}

// Date returns the Gebietsstand, the day the directory describes (UTC).
func (d *Directory) Date() time.Time { return d.date }

// Get returns the area with the 12 digits of a at level l.
func (d *Directory) Get(a ARS, l Level) (Area, bool) {
	i, ok := d.byKey[areaKey{a.String(), l}]
	if !ok {
		return Area{}, false
	}
	return d.areas[i], true
}

// Find returns the most specific area whose key is a, looking no deeper than
// the level a was parsed at: "083110000000" finds the Gemeinde Freiburg,
// "08311" the Kreis, "081000000000" the Regierungsbezirk Stuttgart. It is
// Resolve(KeyOfARS(a)).
func (d *Directory) Find(a ARS) (Area, bool) { return d.Resolve(KeyOfARS(a)) }

// Levels returns the levels at which the 12 digits of a name an area, from
// the top.
func (d *Directory) Levels(a ARS) []Level {
	var ls []Level
	for l := Land; l <= Gemeinde; l++ {
		if _, ok := d.byKey[areaKey{a.String(), l}]; ok {
			ls = append(ls, l)
		}
	}
	return ls
}

// ByAGS returns the area an AGS names: the Gemeinde for 8 digits, the Kreis,
// Regierungsbezirk or Land for a shorter key or one padded with zeros
// ("08315000" is the Kreis 08315). It is Resolve(KeyOfAGS(g)).
func (d *Directory) ByAGS(g AGS) (Area, bool) { return d.Resolve(KeyOfAGS(g)) }

// Children returns the areas whose nearest enclosing area is (a, l), in file
// order. A Kreis's children are its Gemeindeverbände; a Gemeindeverband's its
// Gemeinden.
func (d *Directory) Children(a ARS, l Level) []Area {
	return d.collect(d.children[areaKey{a.String(), l}])
}

// Areas returns all areas of level l in file order (sorted by ARS).
func (d *Directory) Areas(l Level) []Area {
	if !l.Valid() {
		return nil
	}
	return d.collect(d.byLevel[l])
}

// Len returns the number of areas of level l.
func (d *Directory) Len(l Level) int {
	if !l.Valid() {
		return 0
	}
	return len(d.byLevel[l])
}

func (d *Directory) collect(idx []int32) []Area {
	out := make([]Area, len(idx))
	for j, i := range idx {
		out[j] = d.areas[i]
	}
	return out
}

// Population returns the population of all Gemeinden and gemeindefreie
// Gebiete together.
func (d *Directory) Population() int { return d.population }

// Regions returns the planning regions of Baden-Württemberg.
func (d *Directory) Regions() []Region { return slices.Clone(d.regions) }

// Diff compares two directories by (ARS, level): added holds the areas only
// in next, removed those only in prev, both sorted by level then ARS. A
// Gemeinde moved to another Gemeindeverband appears in both, under its old
// and its new ARS.
func Diff(prev, next *Directory) (added, removed []Area) {
	for _, a := range next.areas {
		if _, ok := prev.byKey[areaKey{a.ARS, a.Level}]; !ok {
			added = append(added, a)
		}
	}
	for _, a := range prev.areas {
		if _, ok := next.byKey[areaKey{a.ARS, a.Level}]; !ok {
			removed = append(removed, a)
		}
	}
	byKey := func(a, b Area) int {
		return cmp.Or(cmp.Compare(a.Level, b.Level), cmp.Compare(a.ARS, b.ARS))
	}
	slices.SortFunc(added, byKey)
	slices.SortFunc(removed, byKey)
	return added, removed
}

// NewDirectory builds the Directory of Gebietsstand date from areas as a
// store keeps them, in any order. Each area needs its 12-digit ARS, a valid
// level, a Land of 01 to 16 and a name; (ARS, level) must be unique. Parents
// and the population, male population and hectares of levels above the
// Gemeinde are derived anew, as ParseGV100AD derives them; the values given
// for those are ignored. Errors wrap ErrFormat.
func NewDirectory(date time.Time, areas []Area) (*Directory, error) {
	sorted := slices.Clone(areas)
	slices.SortFunc(sorted, func(a, b Area) int {
		return cmp.Or(cmp.Compare(a.ARS, b.ARS), cmp.Compare(a.Level, b.Level))
	})
	b := newBuilder()
	b.d.date = date.UTC()
	for i, a := range sorted {
		if _, err := Parse(a.ARS); err != nil || len(a.ARS) != 12 {
			return nil, fmt.Errorf("new directory: %w: area %q: ARS must be 12 digits of a Land 01 to 16", ErrFormat, a.ARS)
		}
		if a.Level < Land || a.Level > Gemeinde {
			return nil, fmt.Errorf("new directory: %w: area %s: level %s", ErrFormat, a.ARS, a.Level)
		}
		if a.Name == "" {
			return nil, fmt.Errorf("new directory: %w: area %s %s: empty name", ErrFormat, a.Level, a.ARS)
		}
		k := areaKey{a.ARS, a.Level}
		if _, dup := b.d.byKey[k]; dup {
			return nil, fmt.Errorf("new directory: %w: area %s %s repeated", ErrFormat, a.Level, a.ARS)
		}
		a.Parent, a.ParentLevel = "", 0
		if a.Level != Gemeinde {
			a.Population, a.Male, a.Hectares = 0, 0, 0
		}
		b.d.byKey[k] = int32(i)
		if a.Level == Gemeinde {
			b.d.byAGS[a.AGS] = int32(i)
		}
		b.d.areas = append(b.d.areas, a)
		b.lines = append(b.lines, int32(i+1))
	}
	d, err := b.finish()
	if err != nil {
		return nil, fmt.Errorf("new directory: %w", err)
	}
	return d, nil
}

// All returns every area in directory order: file order for a parsed
// directory, ARS then level for one built by NewDirectory.
func (d *Directory) All() []Area { return slices.Clone(d.areas) }
