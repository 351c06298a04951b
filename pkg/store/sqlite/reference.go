package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
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
	postal_code, postal_code_unique, stand, retired_at, retired_stand, seeded`

func scanArea(row scanner) (store.Area, error) {
	var (
		a                     store.Area
		level, kind, pl       int
		unique, seeded        int
		stand                 string
		retired, retiredStand sql.NullString
	)
	if err := row.Scan(&a.ARS, &level, &a.AGS, &a.Name, &a.Seat, &kind, &a.Parent, &pl, &a.Population, &a.Male, &a.Hectares,
		&a.PostalCode, &unique, &stand, &retired, &retiredStand, &seeded); err != nil {
		return a, err
	}
	a.Level, a.Kind, a.ParentLevel, a.PostalCodeUnique, a.Seeded = ars.Level(level), ars.Kind(kind), ars.Level(pl), unique != 0, seeded != 0
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
func areaArgs(a ars.Area, stand time.Time, seeded bool) []any {
	return []any{a.ARS, int(a.Level), a.AGS, a.Name, a.Seat, int(a.Kind), a.Parent, int(a.ParentLevel), a.Population, a.Male, a.Hectares,
		a.PostalCode, boolInt(a.PostalCodeUnique), stand.Format(dateLayout), nil, nil, boolInt(seeded), store.FoldName(a.Name)}
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
	res, err := db.writeAreas(ctx, actor, d, false)
	if err != nil {
		return store.AreaImport{}, fmt.Errorf("import areas: %w", err)
	}
	return res, nil
}

// SeedAreas stores the areas of d as seeded in one write transaction; see
// store.Reference.
func (db *DB) SeedAreas(ctx context.Context, actor string, d *ars.Directory) (store.AreaImport, error) {
	res, err := db.writeAreas(ctx, actor, d, true)
	if err != nil {
		return store.AreaImport{}, fmt.Errorf("seed areas: %w", err)
	}
	return res, nil
}

// writeAreas imports d, or seeds it: seeded areas are deleted rather
// than retired, and yield to imported ones.
func (db *DB) writeAreas(ctx context.Context, actor string, d *ars.Directory, seed bool) (store.AreaImport, error) {
	stand := d.Date().UTC()
	all := d.All()
	res := store.AreaImport{Stand: stand, Areas: len(all)}
	at := store.Now()
	err := db.write(ctx, func(tx *txn) error {
		// latest is the stand of the areas of this kind (imported or
		// seeded), imported the stand of imported ones.
		var latest, imported sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT max(stand) FILTER (WHERE seeded = ?), max(stand) FILTER (WHERE seeded = 0) FROM areas`,
			boolInt(seed)).Scan(&latest, &imported); err != nil {
			return err
		}
		switch {
		case seed && imported.Valid:
			return fmt.Errorf("%w: a directory of %s is imported; seeded areas do not replace it", store.ErrConflict, imported.String)
		case !seed && latest.Valid && latest.String > stand.Format(dateLayout):
			return fmt.Errorf("%w: directory of %s, the stored one is of %s", store.ErrStale, stand.Format(dateLayout), latest.String)
		case !seed:
			r, err := tx.ExecContext(ctx, `DELETE FROM areas WHERE seeded = 1`)
			if err != nil {
				return fmt.Errorf("delete seeded areas: %w", err)
			}
			n, err := r.RowsAffected()
			if err != nil {
				return err
			}
			res.Replaced = int(n)
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
		ins, err := tx.PrepareContext(ctx, `INSERT INTO areas (`+areaColumns+`, search_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		upd, err := tx.PrepareContext(ctx, `UPDATE areas SET (`+areaColumns+`, search_name) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE ars = ? AND level = ?`)
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
				if _, err := ins.ExecContext(ctx, areaArgs(a, stand, seed)...); err != nil {
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
			if _, err := upd.ExecContext(ctx, append(areaArgs(a, stand, seed), a.ARS, int(a.Level))...); err != nil {
				return fmt.Errorf("update area %s %s: %w", a.Level, a.ARS, err)
			}
		}
		if !seed {
			if err := store.CheckComplete(stand, !standChanged, maps.Values(existing)); err != nil {
				return err
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
			// An imported key d lacks is kept as retired; a seeded one goes.
			if seed {
				_, err = tx.ExecContext(ctx, `DELETE FROM areas WHERE ars = ? AND level = ?`, k.ars, int(k.level))
			} else {
				_, err = retire.ExecContext(ctx, encTime(at), stand.Format(dateLayout), k.ars, int(k.level))
			}
			if err != nil {
				return fmt.Errorf("retire area %s %s: %w", k.level, k.ars, err)
			}
			res.Retired++
		}
		if err := refold(ctx, tx); err != nil {
			return err
		}
		if res.Added+res.Updated+res.Restored+res.Retired+res.Replaced == 0 && !standChanged {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE areas SET stand = ? WHERE retired_at IS NULL`, stand.Format(dateLayout)); err != nil {
			return err
		}
		after, err := json.Marshal(res)
		if err != nil {
			return err
		}
		action := "reference.areas.import"
		if seed {
			action = "reference.areas.seed"
		}
		return audit(ctx, tx, actor, action, "reference:areas", nil, after)
	})
	return res, err
}

// refold rewrites search_name where it is not store.FoldName of the name:
// names a migration folded in SQL differently, or an older fold left.
func refold(ctx context.Context, tx *txn) error {
	rows, err := tx.QueryContext(ctx, `SELECT ars, level, name, search_name FROM areas`)
	if err != nil {
		return fmt.Errorf("refold names: %w", err)
	}
	type stale struct {
		key    areaKey
		folded string
	}
	var todo []stale
	for rows.Next() {
		var k areaKey
		var level int
		var name, folded string
		if err := rows.Scan(&k.ars, &level, &name, &folded); err != nil {
			rows.Close()
			return fmt.Errorf("refold names: %w", err)
		}
		k.level = ars.Level(level)
		if f := store.FoldName(name); f != folded {
			todo = append(todo, stale{k, f})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("refold names: %w", err)
	}
	for _, s := range todo {
		if _, err := tx.ExecContext(ctx, `UPDATE areas SET search_name = ? WHERE ars = ? AND level = ?`, s.folded, s.key.ars, int(s.key.level)); err != nil {
			return fmt.Errorf("refold %s %s: %w", s.key.level, s.key.ars, err)
		}
	}
	return nil
}

// Areas calls fn for every stored area in ARS, level order.
func (db *DB) Areas(ctx context.Context, fn func(store.Area) error) error {
	return db.read(ctx, func(tx *txn) error {
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
	a, err := scanArea(db.rs.QueryRowContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE ars = ? AND level = ?`, arsDigits, int(level)))
	if err != nil {
		return store.Area{}, fmt.Errorf("area %s %s: %w", level, arsDigits, notFound(err))
	}
	return a, nil
}

// FindArea returns the most specific area under a, current before retired.
func (db *DB) FindArea(ctx context.Context, a ars.ARS) (store.Area, error) {
	area, err := scanArea(db.rs.QueryRowContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE ars = ? AND level <= ?
		ORDER BY retired_at IS NOT NULL, level DESC LIMIT 1`, a.String(), int(a.Level())))
	if err != nil {
		return store.Area{}, fmt.Errorf("find area %s: %w", a.Code(), notFound(err))
	}
	return area, nil
}

// AreaByAGS returns the area g names, current before retired: the
// Gemeinde of an 8-digit AGS, else the deepest area g names padded.
func (db *DB) AreaByAGS(ctx context.Context, g ars.AGS) (store.Area, error) {
	conds, args := areaByAGS(g)
	area, err := scanArea(db.rs.QueryRowContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE `+conds+`
		ORDER BY retired_at IS NOT NULL, level DESC, retired_at DESC LIMIT 1`, args...))
	if err != nil {
		return store.Area{}, fmt.Errorf("area by ags %s: %w", g.Code(), notFound(err))
	}
	return area, nil
}

// areaByAGS returns the condition on areas that g names and its
// arguments: the Gemeinde with AGS g, or one of the key's candidates (see
// ars.Key.Candidates), which share their ARS and span a run of levels.
func areaByAGS(g ars.AGS) (string, []any) {
	var conds []string
	var args []any
	if g.Level() == ars.Gemeinde {
		conds = append(conds, `(level = ? AND ags = ?)`)
		args = append(args, int(ars.Gemeinde), g.String())
	}
	if cs := ars.KeyOfAGS(g).Candidates(); len(cs) > 0 {
		conds = append(conds, `(ars = ? AND level BETWEEN ? AND ?)`)
		args = append(args, cs[0].String(), int(cs[len(cs)-1].Level()), int(cs[0].Level()))
	}
	return strings.Join(conds, " OR "), args
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
			codeArgs = append(codeArgs, "%"+likeEscape(t.Contains[0])+"%")
		} else if name == nil || len(t.Contains[0]) > len(name.Contains[0]) {
			name = t
		}
	}
	var cands []store.AreaCandidate
	err := db.read(ctx, func(tx *txn) error {
		codes := make(map[string][]string)
		if len(codeConds) > 0 {
			// Searches vary in their number of terms: not kept prepared.
			rows, err := tx.Tx.QueryContext(ctx, `SELECT ags, plz FROM postcodes WHERE `+strings.Join(codeConds, " OR "), codeArgs...)
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
			var likes []string
			var args []any
			for _, c := range name.Contains {
				likes = append(likes, `search_name LIKE ? ESCAPE '\'`)
				args = append(args, "%"+likeEscape(c)+"%")
			}
			rows, err = tx.Tx.QueryContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE retired_at IS NULL AND (`+strings.Join(likes, " OR ")+`)`, args...)
		} else {
			conds := strings.ReplaceAll(strings.Join(codeConds, " OR "), "plz", "postal_code")
			rows, err = tx.Tx.QueryContext(ctx, `SELECT `+areaColumns+` FROM areas WHERE retired_at IS NULL AND level = ?
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
	err := db.write(ctx, func(tx *txn) error {
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
	e, err := scanService(db.rs.QueryRowContext(ctx, `SELECT `+serviceColumns+` FROM leika_services WHERE key = ?`, string(key)))
	if err != nil {
		return store.CatalogueEntry{}, fmt.Errorf("service %s: %w", key, notFound(err))
	}
	return e, nil
}

// Catalogue calls fn for every service in key order.
func (db *DB) Catalogue(ctx context.Context, fn func(store.CatalogueEntry) error) error {
	return db.read(ctx, func(tx *txn) error {
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
	err := db.write(ctx, func(tx *txn) error {
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
func listPostcodes(ctx context.Context, tx *txn) ([]ars.PostalCode, error) {
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
	return db.read(ctx, func(tx *txn) error {
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
