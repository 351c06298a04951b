package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/store"
)

var _ store.Reference = (*DB)(nil)

// dateLayout is how a Gebietsstand is stored.
const dateLayout = "2006-01-02"

const areaColumns = `ars, level, ags, name, seat, kind, parent, parent_level, population, male, hectares,
	postal_code, postal_code_unique, stand, retired_at, retired_stand`

func scanArea(row scanner) (store.Area, error) {
	var (
		a                     store.Area
		level, kind, pl       int
		unique                int
		stand                 string
		retired, retiredStand sql.NullString
	)
	if err := row.Scan(&a.ARS, &level, &a.AGS, &a.Name, &a.Seat, &kind, &a.Parent, &pl, &a.Population, &a.Male, &a.Hectares,
		&a.PostalCode, &unique, &stand, &retired, &retiredStand); err != nil {
		return a, err
	}
	a.Level, a.Kind, a.ParentLevel, a.PostalCodeUnique = ars.Level(level), ars.Kind(kind), ars.Level(pl), unique != 0
	var err error
	if a.Stand, err = time.Parse(dateLayout, stand); err != nil {
		return a, fmt.Errorf("decode stand: %w", err)
	}
	if a.Retired, err = decTimePtr(retired); err != nil {
		return a, err
	}
	if retiredStand.Valid {
		t, err := time.Parse(dateLayout, retiredStand.String)
		if err != nil {
			return a, fmt.Errorf("decode retired stand: %w", err)
		}
		a.RetiredStand = &t
	}
	return a, nil
}

// areaArgs returns a's columns in areaColumns order, with search_name last.
func areaArgs(a ars.Area, stand time.Time) []any {
	return []any{a.ARS, int(a.Level), a.AGS, a.Name, a.Seat, int(a.Kind), a.Parent, int(a.ParentLevel), a.Population, a.Male, a.Hectares,
		a.PostalCode, boolInt(a.PostalCodeUnique), stand.Format(dateLayout), nil, nil, store.FoldName(a.Name)}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type areaKey struct {
	ars   string
	level ars.Level
}

// ImportAreas makes the stored directory that of d in one write
// transaction; see store.Reference.
func (db *DB) ImportAreas(ctx context.Context, actor string, d *ars.Directory) (store.AreaImport, error) {
	stand := d.Date().UTC()
	all := d.All()
	res := store.AreaImport{Stand: stand, Areas: len(all)}
	at := store.Now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		var latest sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT max(stand) FROM areas`).Scan(&latest); err != nil {
			return err
		}
		if latest.Valid && latest.String > stand.Format(dateLayout) {
			return fmt.Errorf("%w: directory of %s, the stored one is of %s", store.ErrStale, stand.Format(dateLayout), latest.String)
		}
		standChanged := !latest.Valid || latest.String != stand.Format(dateLayout)
		existing := make(map[areaKey]store.Area)
		rows, err := tx.QueryContext(ctx, `SELECT `+areaColumns+` FROM areas`)
		if err != nil {
			return err
		}
		for rows.Next() {
			a, err := scanArea(rows)
			if err != nil {
				rows.Close()
				return err
			}
			existing[areaKey{a.ARS, a.Level}] = a
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO areas (`+areaColumns+`, search_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		upd, err := tx.PrepareContext(ctx, `UPDATE areas SET (`+areaColumns+`, search_name) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE ars = ? AND level = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		for _, a := range all {
			k := areaKey{a.ARS, a.Level}
			s, ok := existing[k]
			delete(existing, k)
			switch {
			case !ok:
				if _, err := ins.ExecContext(ctx, areaArgs(a, stand)...); err != nil {
					return fmt.Errorf("insert area %s %s: %w", a.Level, a.ARS, err)
				}
				res.Added++
				continue
			case !store.ChangedArea(s, a):
				res.Unchanged++
				continue
			case s.Retired != nil:
				res.Restored++
			default:
				res.Updated++
			}
			if _, err := upd.ExecContext(ctx, append(areaArgs(a, stand), a.ARS, int(a.Level))...); err != nil {
				return fmt.Errorf("update area %s %s: %w", a.Level, a.ARS, err)
			}
		}
		retire, err := tx.PrepareContext(ctx, `UPDATE areas SET retired_at = ?, retired_stand = ? WHERE ars = ? AND level = ?`)
		if err != nil {
			return err
		}
		defer retire.Close()
		for k, s := range existing {
			if s.Retired != nil {
				continue
			}
			if _, err := retire.ExecContext(ctx, encTime(at), stand.Format(dateLayout), k.ars, int(k.level)); err != nil {
				return fmt.Errorf("retire area %s %s: %w", k.level, k.ars, err)
			}
			res.Retired++
		}
		if res.Added+res.Updated+res.Restored+res.Retired == 0 && !standChanged {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE areas SET stand = ? WHERE retired_at IS NULL`, stand.Format(dateLayout)); err != nil {
			return err
		}
		after, err := json.Marshal(res)
		if err != nil {
			return err
		}
		return audit(ctx, tx, actor, "reference.areas.import", "reference:areas", nil, after)
	})
	if err != nil {
		return store.AreaImport{}, fmt.Errorf("import areas: %w", err)
	}
	return res, nil
}

// Areas calls fn for every stored area in ARS, level order.
func (db *DB) Areas(ctx context.Context, fn func(store.Area) error) error {
	return db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+areaColumns+` FROM areas ORDER BY ars, level`)
		if err != nil {
			return fmt.Errorf("list areas: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			a, err := scanArea(rows)
			if err != nil {
				return fmt.Errorf("list areas: %w", err)
			}
			if err := fn(a); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list areas: %w", err)
		}
		return nil
	})
}

// Area returns the area (arsDigits, level).
func (db *DB) Area(ctx context.Context, arsDigits string, level ars.Level) (store.Area, error) {
	a, err := scanArea(db.r.QueryRowContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE ars = ? AND level = ?`, arsDigits, int(level)))
	if err != nil {
		return store.Area{}, fmt.Errorf("area %s %s: %w", level, arsDigits, notFound(err))
	}
	return a, nil
}

// FindArea returns the most specific area under a, current before retired.
func (db *DB) FindArea(ctx context.Context, a ars.ARS) (store.Area, error) {
	area, err := scanArea(db.r.QueryRowContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE ars = ? AND level <= ?
		ORDER BY retired_at IS NOT NULL, level DESC LIMIT 1`, a.String(), int(a.Level())))
	if err != nil {
		return store.Area{}, fmt.Errorf("find area %s: %w", a.Code(), notFound(err))
	}
	return area, nil
}

// AreaByAGS returns the area g names, current before retired.
func (db *DB) AreaByAGS(ctx context.Context, g ars.AGS) (store.Area, error) {
	if a, ok := g.ARS(); ok {
		area, err := db.Area(ctx, a.String(), a.Level())
		if err != nil {
			return store.Area{}, fmt.Errorf("area by ags %s: %w", g.Code(), err)
		}
		return area, nil
	}
	area, err := scanArea(db.r.QueryRowContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE ags = ? AND level = ?
		ORDER BY retired_at IS NOT NULL, retired_at DESC LIMIT 1`, g.String(), int(ars.Gemeinde)))
	if err != nil {
		return store.Area{}, fmt.Errorf("area by ags %s: %w", g.Code(), notFound(err))
	}
	return area, nil
}

// likeEscape escapes LIKE's wildcards in s, with '\' as the escape.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// SearchAreas finds candidates by the longest name term (or, with postcode
// terms only, by postcode) and leaves matching to store.FilterAreas.
func (db *DB) SearchAreas(ctx context.Context, q store.AreaQuery, p store.Page) ([]store.Area, int, error) {
	if err := q.Check(); err != nil {
		return nil, 0, fmt.Errorf("search areas: %w", err)
	}
	terms := q.ParseTerms()
	var name *store.SearchTerm
	var codeConds []string
	var codeArgs []any
	for i := range terms {
		t := &terms[i]
		if t.Postcode {
			codeConds = append(codeConds, `plz LIKE ? ESCAPE '\'`)
			codeArgs = append(codeArgs, "%"+likeEscape(t.Text)+"%")
		} else if name == nil || len(t.Text) > len(name.Text) {
			name = t
		}
	}
	var cands []store.AreaCandidate
	err := db.read(ctx, func(tx *sql.Tx) error {
		codes := make(map[string][]string)
		if len(codeConds) > 0 {
			rows, err := tx.QueryContext(ctx, `SELECT ags, plz FROM postcodes WHERE `+strings.Join(codeConds, " OR "), codeArgs...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var ags, plz string
				if err := rows.Scan(&ags, &plz); err != nil {
					rows.Close()
					return err
				}
				codes[ags] = append(codes[ags], plz)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		var rows *sql.Rows
		var err error
		if name != nil {
			rows, err = tx.QueryContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE retired_at IS NULL AND search_name LIKE ? ESCAPE '\'`,
				"%"+likeEscape(name.Text)+"%")
		} else {
			conds := strings.ReplaceAll(strings.Join(codeConds, " OR "), "plz", "postal_code")
			rows, err = tx.QueryContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE retired_at IS NULL AND level = ?
				AND (ags IN (SELECT ags FROM postcodes WHERE `+strings.Join(codeConds, " OR ")+`) OR `+conds+`)`,
				append(append([]any{int(ars.Gemeinde)}, codeArgs...), codeArgs...)...)
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := scanArea(rows)
			if err != nil {
				return err
			}
			c := store.AreaCandidate{Area: a}
			if a.Level == ars.Gemeinde {
				c.Postcodes = codes[a.AGS]
			}
			cands = append(cands, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("search areas: %w", err)
	}
	list, total := store.FilterAreas(cands, q, p)
	return list, total, nil
}

const serviceColumns = `key, name, level, typisierung, kind, ozg_id, ozg_leistung, themenfeld, updated_at`

func scanService(row scanner) (store.CatalogueEntry, error) {
	var (
		e       store.CatalogueEntry
		key     string
		updated string
	)
	if err := row.Scan(&key, &e.Name, &e.Level, &e.Typisierung, &e.Kind, &e.OZGID, &e.OZGLeistung, &e.Themenfeld, &updated); err != nil {
		return e, err
	}
	e.Key = leika.Key(key)
	var err error
	e.UpdatedAt, err = decTime(updated)
	return e, err
}

// ImportCatalogue adds and updates services in one write transaction.
func (db *DB) ImportCatalogue(ctx context.Context, actor string, services []leika.Service) (store.CatalogueImport, error) {
	res := store.CatalogueImport{Services: len(services)}
	at := store.Now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		existing := make(map[leika.Key]store.CatalogueEntry)
		rows, err := tx.QueryContext(ctx, `SELECT `+serviceColumns+` FROM leika_services`)
		if err != nil {
			return err
		}
		for rows.Next() {
			e, err := scanService(rows)
			if err != nil {
				rows.Close()
				return err
			}
			existing[e.Key] = e
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		up, err := tx.PrepareContext(ctx, `INSERT INTO leika_services (`+serviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET (name, level, typisierung, kind, ozg_id, ozg_leistung, themenfeld, updated_at) =
			(excluded.name, excluded.level, excluded.typisierung, excluded.kind, excluded.ozg_id, excluded.ozg_leistung, excluded.themenfeld, excluded.updated_at)`)
		if err != nil {
			return err
		}
		defer up.Close()
		for _, s := range services {
			e, ok := existing[s.Key]
			switch {
			case !ok:
				res.Added++
			case store.ChangedService(e, s):
				res.Updated++
			default:
				res.Unchanged++
				continue
			}
			if _, err := up.ExecContext(ctx, string(s.Key), s.Name, s.Level, s.Typisierung, s.Kind, s.OZGID, s.OZGLeistung, s.Themenfeld, encTime(at)); err != nil {
				return fmt.Errorf("service %s: %w", s.Key, err)
			}
		}
		if res.Added+res.Updated == 0 {
			return nil
		}
		after, err := json.Marshal(res)
		if err != nil {
			return err
		}
		return audit(ctx, tx, actor, "reference.catalogue.import", "reference:catalogue", nil, after)
	})
	if err != nil {
		return store.CatalogueImport{}, fmt.Errorf("import catalogue: %w", err)
	}
	return res, nil
}

// CatalogueEntry returns the service key.
func (db *DB) CatalogueEntry(ctx context.Context, key leika.Key) (store.CatalogueEntry, error) {
	e, err := scanService(db.r.QueryRowContext(ctx, `SELECT `+serviceColumns+` FROM leika_services WHERE key = ?`, string(key)))
	if err != nil {
		return store.CatalogueEntry{}, fmt.Errorf("service %s: %w", key, notFound(err))
	}
	return e, nil
}

// Catalogue calls fn for every service in key order.
func (db *DB) Catalogue(ctx context.Context, fn func(store.CatalogueEntry) error) error {
	return db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+serviceColumns+` FROM leika_services ORDER BY key`)
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanService(rows)
			if err != nil {
				return fmt.Errorf("list services: %w", err)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		return nil
	})
}

// ImportPostcodes replaces the postcode table in one write transaction.
func (db *DB) ImportPostcodes(ctx context.Context, actor string, codes []ars.PostalCode) (store.PostcodeImport, error) {
	res := store.PostcodeImport{Rows: len(codes)}
	err := db.write(ctx, func(tx *sql.Tx) error {
		prev, err := listPostcodes(ctx, tx)
		if err != nil {
			return err
		}
		res.Previous = len(prev)
		if slices.Equal(prev, codes) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM postcodes`); err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO postcodes (plz, ags, ars, name, district_ars, in_directory) VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for _, c := range codes {
			if _, err := ins.ExecContext(ctx, c.Code, c.AGS, c.ARS, c.Name, c.DistrictARS, boolInt(c.Current)); err != nil {
				return fmt.Errorf("postcode %s: %w", c.Code, err)
			}
		}
		after, err := json.Marshal(res)
		if err != nil {
			return err
		}
		return audit(ctx, tx, actor, "reference.postcodes.import", "reference:postcodes", nil, after)
	})
	if err != nil {
		return store.PostcodeImport{}, fmt.Errorf("import postcodes: %w", err)
	}
	return res, nil
}

// listPostcodes returns the postcode table in import order.
func listPostcodes(ctx context.Context, tx *sql.Tx) ([]ars.PostalCode, error) {
	rows, err := tx.QueryContext(ctx, `SELECT plz, ags, ars, name, district_ars, in_directory FROM postcodes ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ars.PostalCode
	for rows.Next() {
		var c ars.PostalCode
		var current int
		if err := rows.Scan(&c.Code, &c.AGS, &c.ARS, &c.Name, &c.DistrictARS, &current); err != nil {
			return nil, err
		}
		c.Current = current != 0
		out = append(out, c)
	}
	return out, rows.Err()
}

// EachDestination calls fn for every destination in id order, in one
// read transaction.
func (db *DB) EachDestination(ctx context.Context, fn func(store.Destination) error) error {
	return db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+destinationColumns+` FROM destinations ORDER BY id`)
		if err != nil {
			return fmt.Errorf("list destinations: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDestination(rows)
			if err != nil {
				return fmt.Errorf("list destinations: %w", err)
			}
			if err := fn(d); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list destinations: %w", err)
		}
		return nil
	})
}
