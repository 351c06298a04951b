package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/store"
)

var _ store.Reference = (*DB)(nil)

const areaColumns = `ars, level, ags, name, seat, kind, parent, parent_level, population, male, hectares,
	postal_code, postal_code_unique, stand, retired_at, retired_stand, seeded`

// areaColumnList names the columns an import writes, in areaArgs order.
var areaColumnList = []string{"ars", "level", "ags", "name", "seat", "kind", "parent", "parent_level", "population", "male", "hectares",
	"postal_code", "postal_code_unique", "stand", "retired_at", "retired_stand", "seeded", "search_name"}

func scanArea(row pgx.Row) (store.Area, error) {
	var (
		a               store.Area
		level, kind, pl int16
		population      int64
		male            int64
	)
	if err := row.Scan(&a.ARS, &level, &a.AGS, &a.Name, &a.Seat, &kind, &a.Parent, &pl, &population, &male, &a.Hectares,
		&a.PostalCode, &a.PostalCodeUnique, &a.Stand, &a.Retired, &a.RetiredStand, &a.Seeded); err != nil {
		return a, err
	}
	a.Level, a.Kind, a.ParentLevel = ars.Level(level), ars.Kind(kind), ars.Level(pl)
	a.Population, a.Male = int(population), int(male)
	utc(&a.Stand)
	a.Retired = utcPtr(a.Retired)
	a.RetiredStand = utcPtr(a.RetiredStand)
	return a, nil
}

// areaArgs returns a's columns in areaColumnList order.
func areaArgs(a ars.Area, stand time.Time, seeded bool) []any {
	return []any{a.ARS, int16(a.Level), a.AGS, a.Name, a.Seat, int16(a.Kind), a.Parent, int16(a.ParentLevel), int64(a.Population), int64(a.Male), a.Hectares,
		a.PostalCode, a.PostalCodeUnique, stand, nil, nil, seeded, store.FoldName(a.Name)}
}

type areaKey struct {
	ars   string
	level ars.Level
}

// placeholders returns "$from, $from+1, …" for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}

// ImportAreas makes the stored directory that of d in one transaction,
// holding off other imports and writers of areas meanwhile; see
// store.Reference.
func (db *DB) ImportAreas(ctx context.Context, actor string, d *ars.Directory) (store.AreaImport, error) {
	res, err := db.writeAreas(ctx, actor, d, false)
	if err != nil {
		return store.AreaImport{}, fmt.Errorf("import areas: %w", err)
	}
	return res, nil
}

// SeedAreas stores the areas of d as seeded in one transaction; see
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
	err := db.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE areas IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		// latest is the stand of the areas of this kind (imported or
		// seeded), imported the stand of imported ones.
		var latest, imported *time.Time
		if err := tx.QueryRow(ctx, `SELECT max(stand) FILTER (WHERE seeded = $1), max(stand) FILTER (WHERE NOT seeded) FROM areas`,
			seed).Scan(&latest, &imported); err != nil {
			return err
		}
		switch {
		case seed && imported != nil:
			return fmt.Errorf("%w: a directory of %s is imported; seeded areas do not replace it", store.ErrConflict, imported.Format(time.DateOnly))
		case !seed && latest != nil && latest.After(stand):
			return fmt.Errorf("%w: directory of %s, the stored one is of %s", store.ErrStale, stand.Format(time.DateOnly), latest.Format(time.DateOnly))
		case !seed:
			tag, err := tx.Exec(ctx, `DELETE FROM areas WHERE seeded`)
			if err != nil {
				return fmt.Errorf("delete seeded areas: %w", err)
			}
			res.Replaced = int(tag.RowsAffected())
		}
		standChanged := latest == nil || !latest.Equal(stand)
		rows, err := tx.Query(ctx, `SELECT `+areaColumns+` FROM areas`)
		if err != nil {
			return err
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Area, error) { return scanArea(r) })
		if err != nil {
			return err
		}
		existing := make(map[areaKey]store.Area, len(list))
		for _, a := range list {
			existing[areaKey{a.ARS, a.Level}] = a
		}
		var inserts [][]any
		batch := &pgx.Batch{}
		update := `UPDATE areas SET (` + strings.Join(areaColumnList, ", ") + `) = (` + placeholders(1, len(areaColumnList)) + `)
			WHERE ars = $1 AND level = $2`
		for _, a := range all {
			k := areaKey{a.ARS, a.Level}
			s, ok := existing[k]
			delete(existing, k)
			switch {
			case !ok:
				inserts = append(inserts, areaArgs(a, stand, seed))
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
			batch.Queue(update, areaArgs(a, stand, seed)...)
		}
		if !seed {
			if err := store.CheckComplete(stand, !standChanged, maps.Values(existing)); err != nil {
				return err
			}
		}
		for k, s := range existing {
			if s.Retired != nil {
				continue
			}
			// An imported key d lacks is kept as retired; a seeded one goes.
			if seed {
				batch.Queue(`DELETE FROM areas WHERE ars = $1 AND level = $2`, k.ars, int16(k.level))
			} else {
				batch.Queue(`UPDATE areas SET retired_at = $1, retired_stand = $2 WHERE ars = $3 AND level = $4`, at, stand, k.ars, int16(k.level))
			}
			res.Retired++
		}
		if len(inserts) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"areas"}, areaColumnList, pgx.CopyFromRows(inserts)); err != nil {
				return fmt.Errorf("insert areas: %w", err)
			}
		}
		if batch.Len() > 0 {
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return fmt.Errorf("update areas: %w", err)
			}
		}
		if err := refold(ctx, tx); err != nil {
			return err
		}
		if res.Added+res.Updated+res.Restored+res.Retired+res.Replaced == 0 && !standChanged {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE areas SET stand = $1 WHERE retired_at IS NULL`, stand); err != nil {
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
func refold(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT ars, level, name, search_name FROM areas`)
	if err != nil {
		return fmt.Errorf("refold names: %w", err)
	}
	var (
		arsDigits, name, folded string
		level                   int16
	)
	batch := &pgx.Batch{}
	if _, err := pgx.ForEachRow(rows, []any{&arsDigits, &level, &name, &folded}, func() error {
		if f := store.FoldName(name); f != folded {
			batch.Queue(`UPDATE areas SET search_name = $1 WHERE ars = $2 AND level = $3`, f, arsDigits, level)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("refold names: %w", err)
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("refold names: %w", err)
		}
	}
	return nil
}

// Areas calls fn for every stored area in ARS, level order.
func (db *DB) Areas(ctx context.Context, fn func(store.Area) error) error {
	return db.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+areaColumns+` FROM areas ORDER BY ars COLLATE "C", level`)
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
	a, err := scanArea(db.pool.QueryRow(ctx, `SELECT `+areaColumns+` FROM areas WHERE ars = $1 AND level = $2`, arsDigits, int16(level)))
	if err != nil {
		return store.Area{}, fmt.Errorf("area %s %s: %w", level, arsDigits, notFound(err))
	}
	return a, nil
}

// FindArea returns the most specific area under a, current before retired.
func (db *DB) FindArea(ctx context.Context, a ars.ARS) (store.Area, error) {
	area, err := scanArea(db.pool.QueryRow(ctx, `SELECT `+areaColumns+` FROM areas WHERE ars = $1 AND level <= $2
		ORDER BY retired_at IS NOT NULL, level DESC LIMIT 1`, a.String(), int16(a.Level())))
	if err != nil {
		return store.Area{}, fmt.Errorf("find area %s: %w", a.Code(), notFound(err))
	}
	return area, nil
}

// AreaByAGS returns the area g names, current before retired: the
// Gemeinde of an 8-digit AGS, else the deepest area g names padded.
func (db *DB) AreaByAGS(ctx context.Context, g ars.AGS) (store.Area, error) {
	conds, args := areaByAGS(g)
	area, err := scanArea(db.pool.QueryRow(ctx, `SELECT `+areaColumns+` FROM areas WHERE `+conds+`
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
		conds = append(conds, fmt.Sprintf(`(level = $%d AND ags = $%d)`, len(args)+1, len(args)+2))
		args = append(args, int16(ars.Gemeinde), g.String())
	}
	if cs := ars.KeyOfAGS(g).Candidates(); len(cs) > 0 {
		conds = append(conds, fmt.Sprintf(`(ars = $%d AND level BETWEEN $%d AND $%d)`, len(args)+1, len(args)+2, len(args)+3))
		args = append(args, cs[0].String(), int16(cs[len(cs)-1].Level()), int16(cs[0].Level()))
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
	var codePatterns []string
	for i := range terms {
		t := &terms[i]
		if t.Postcode {
			codePatterns = append(codePatterns, "%"+likeEscape(t.Contains[0])+"%")
		} else if name == nil || len(t.Contains[0]) > len(name.Contains[0]) {
			name = t
		}
	}
	var cands []store.AreaCandidate
	err := db.read(ctx, func(tx pgx.Tx) error {
		codes := make(map[string][]string)
		if len(codePatterns) > 0 {
			rows, err := tx.Query(ctx, `SELECT ags, plz FROM postcodes WHERE plz LIKE ANY ($1)`, codePatterns)
			if err != nil {
				return err
			}
			var ags, plz string
			if _, err := pgx.ForEachRow(rows, []any{&ags, &plz}, func() error {
				codes[ags] = append(codes[ags], plz)
				return nil
			}); err != nil {
				return err
			}
		}
		var rows pgx.Rows
		var err error
		if name != nil {
			var likes []string
			for _, c := range name.Contains {
				likes = append(likes, "%"+likeEscape(c)+"%")
			}
			rows, err = tx.Query(ctx, `SELECT `+areaColumns+` FROM areas WHERE retired_at IS NULL AND search_name LIKE ANY ($1)`, likes)
		} else {
			rows, err = tx.Query(ctx, `SELECT `+areaColumns+` FROM areas WHERE retired_at IS NULL AND level = $1
				AND (ags IN (SELECT ags FROM postcodes WHERE plz LIKE ANY ($2)) OR postal_code LIKE ANY ($2))`,
				int16(ars.Gemeinde), codePatterns)
		}
		if err != nil {
			return err
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Area, error) { return scanArea(r) })
		if err != nil {
			return err
		}
		for _, a := range list {
			c := store.AreaCandidate{Area: a}
			if a.Level == ars.Gemeinde {
				c.Postcodes = codes[a.AGS]
			}
			cands = append(cands, c)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("search areas: %w", err)
	}
	list, total := store.FilterAreas(cands, q, p)
	return list, total, nil
}

const serviceColumns = `key, name, level, typisierung, kind, ozg_id, ozg_leistung, themenfeld, updated_at`

func scanService(row pgx.Row) (store.CatalogueEntry, error) {
	var (
		e   store.CatalogueEntry
		key string
	)
	if err := row.Scan(&key, &e.Name, &e.Level, &e.Typisierung, &e.Kind, &e.OZGID, &e.OZGLeistung, &e.Themenfeld, &e.UpdatedAt); err != nil {
		return e, err
	}
	e.Key = leika.Key(key)
	utc(&e.UpdatedAt)
	return e, nil
}

// ImportCatalogue adds and updates services in one transaction.
func (db *DB) ImportCatalogue(ctx context.Context, actor string, services []leika.Service) (store.CatalogueImport, error) {
	res := store.CatalogueImport{Services: len(services)}
	at := store.Now()
	err := db.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE leika_services IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+serviceColumns+` FROM leika_services`)
		if err != nil {
			return err
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.CatalogueEntry, error) { return scanService(r) })
		if err != nil {
			return err
		}
		existing := make(map[leika.Key]store.CatalogueEntry, len(list))
		for _, e := range list {
			existing[e.Key] = e
		}
		batch := &pgx.Batch{}
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
			batch.Queue(`INSERT INTO leika_services (`+serviceColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
				ON CONFLICT (key) DO UPDATE SET (name, level, typisierung, kind, ozg_id, ozg_leistung, themenfeld, updated_at) =
				(excluded.name, excluded.level, excluded.typisierung, excluded.kind, excluded.ozg_id, excluded.ozg_leistung, excluded.themenfeld, excluded.updated_at)`,
				string(s.Key), s.Name, s.Level, s.Typisierung, s.Kind, s.OZGID, s.OZGLeistung, s.Themenfeld, at)
		}
		if batch.Len() == 0 {
			return nil
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("write services: %w", err)
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
	e, err := scanService(db.pool.QueryRow(ctx, `SELECT `+serviceColumns+` FROM leika_services WHERE key = $1`, string(key)))
	if err != nil {
		return store.CatalogueEntry{}, fmt.Errorf("service %s: %w", key, notFound(err))
	}
	return e, nil
}

// Catalogue calls fn for every service in key order.
func (db *DB) Catalogue(ctx context.Context, fn func(store.CatalogueEntry) error) error {
	return db.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+serviceColumns+` FROM leika_services ORDER BY key COLLATE "C"`)
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

// ImportPostcodes replaces the postcode table in one transaction.
func (db *DB) ImportPostcodes(ctx context.Context, actor string, codes []ars.PostalCode) (store.PostcodeImport, error) {
	res := store.PostcodeImport{Rows: len(codes)}
	err := db.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE postcodes IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT plz, ags, ars, name, district_ars, in_directory FROM postcodes ORDER BY seq`)
		if err != nil {
			return err
		}
		prev, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ars.PostalCode, error) {
			var c ars.PostalCode
			err := r.Scan(&c.Code, &c.AGS, &c.ARS, &c.Name, &c.DistrictARS, &c.Current)
			return c, err
		})
		if err != nil {
			return err
		}
		res.Previous = len(prev)
		if slices.Equal(prev, codes) {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM postcodes`); err != nil {
			return err
		}
		rowsIn := make([][]any, len(codes))
		for i, c := range codes {
			rowsIn[i] = []any{c.Code, c.AGS, c.ARS, c.Name, c.DistrictARS, c.Current}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"postcodes"}, []string{"plz", "ags", "ars", "name", "district_ars", "in_directory"}, pgx.CopyFromRows(rowsIn)); err != nil {
			return fmt.Errorf("insert postcodes: %w", err)
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

// EachDestination calls fn for every destination in id order, within one
// snapshot.
func (db *DB) EachDestination(ctx context.Context, fn func(store.Destination) error) error {
	return db.read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+destinationColumns+` FROM destinations ORDER BY id COLLATE "C"`)
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
