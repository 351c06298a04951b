package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtsbote/amtsbote/pkg/store"
)

const destinationColumns = `id, status, contact, services, encryption_kid, signing_kid,
	metadata_versions, reply_channels, home_region, callback_url, callback_secret, created_at, updated_at`

func scanDestination(row pgx.Row) (store.Destination, error) {
	var (
		d                           store.Destination
		contact, services, versions []byte
	)
	if err := row.Scan(&d.ID, &d.Status, &contact, &services, &d.EncryptionKID, &d.SigningKID,
		&versions, (*[]byte)(&d.ReplyChannels), &d.HomeRegion, &d.CallbackURL, &d.CallbackSecret, &d.CreatedAt, &d.UpdatedAt); err != nil {
		return d, err
	}
	utc(&d.CreatedAt)
	utc(&d.UpdatedAt)
	return d, errors.Join(decJSON(contact, &d.Contact), decJSON(services, &d.Services), decJSON(versions, &d.MetadataVersions))
}

// destinationArgs returns d's columns in destinationColumns order.
func destinationArgs(d store.Destination) ([]any, error) {
	contact, err1 := encJSON(d.Contact)
	services, err2 := encJSON(d.Services)
	versions, err3 := encJSON(d.MetadataVersions)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	return []any{d.ID, string(d.Status), contact, services, d.EncryptionKID, d.SigningKID,
		versions, rawJSON(d.ReplyChannels), d.HomeRegion, d.CallbackURL, d.CallbackSecret,
		store.Truncate(d.CreatedAt), store.Truncate(d.UpdatedAt)}, nil
}

// lockDestination reads destination id and locks its row until tx ends, so
// changes to one destination and its keys take turns.
func lockDestination(ctx context.Context, tx pgx.Tx, id string) (store.Destination, error) {
	d, err := scanDestination(tx.QueryRow(ctx, `SELECT `+destinationColumns+` FROM destinations WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return d, fmt.Errorf("destination %s: %w", id, notFound(err))
	}
	return d, nil
}

const keyColumns = `destination_id, kid, use, jwk, created_at, valid_until`

func scanKey(row pgx.Row) (store.Key, error) {
	var k store.Key
	if err := row.Scan(&k.DestinationID, &k.KID, &k.Use, (*[]byte)(&k.JWK), &k.CreatedAt, &k.ValidUntil); err != nil {
		return k, err
	}
	utc(&k.CreatedAt)
	k.ValidUntil = utcPtr(k.ValidUntil)
	return k, nil
}

func insertKey(ctx context.Context, tx pgx.Tx, k store.Key) error {
	_, err := tx.Exec(ctx, `INSERT INTO keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		k.DestinationID, k.KID, string(k.Use), rawJSON(k.JWK), store.Truncate(k.CreatedAt), store.TruncatePtr(k.ValidUntil))
	if err != nil {
		return fmt.Errorf("insert key %s: %w", k.KID, conflict(err))
	}
	return nil
}

func listKeys(ctx context.Context, q querier, destinationID string) ([]store.Key, error) {
	rows, err := q.Query(ctx, `SELECT `+keyColumns+` FROM keys WHERE destination_id = $1 ORDER BY created_at, seq`, destinationID)
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", destinationID, err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", destinationID, err)
	}
	return keys, nil
}

// audit appends one entry to the audit log inside tx.
func audit(ctx context.Context, tx pgx.Tx, actor, action, object string, before, after []byte) error {
	_, err := tx.Exec(ctx, `INSERT INTO audit_log (at, actor, action, object, before, after) VALUES ($1, $2, $3, $4, $5, $6)`,
		store.Now(), actor, action, object, rawJSON(before), rawJSON(after))
	if err != nil {
		return fmt.Errorf("audit %s %s: %w", action, object, err)
	}
	return nil
}

// snapshot returns the audit record of destination d and its keys as they
// are in tx.
func snapshot(ctx context.Context, tx pgx.Tx, d store.Destination) ([]byte, error) {
	keys, err := listKeys(ctx, tx, d.ID)
	if err != nil {
		return nil, err
	}
	return d.AuditJSON(keys)
}

// Audit appends e to the audit log.
func (db *DB) Audit(ctx context.Context, e store.AuditEntry) error {
	return db.write(ctx, func(tx pgx.Tx) error {
		return audit(ctx, tx, e.Actor, e.Action, e.Object, e.Before, e.After)
	})
}

// auditDestination records a change of destination d, reading its keys
// after the change.
func auditDestination(ctx context.Context, tx pgx.Tx, actor, action string, before []byte, d store.Destination, secretChanged bool) error {
	keys, err := listKeys(ctx, tx, d.ID)
	if err != nil {
		return err
	}
	after, err := d.AuditUpdateJSON(keys, secretChanged)
	if err != nil {
		return err
	}
	return audit(ctx, tx, actor, action, "destination:"+d.ID, before, after)
}

// CreateDestination inserts d and its keys and audits "destination.create".
// Keys without a destination id are d's; zero times become now.
func (db *DB) CreateDestination(ctx context.Context, actor string, d store.Destination, keys []store.Key) error {
	d.CreatedAt = store.OrNow(d.CreatedAt)
	if d.UpdatedAt.IsZero() {
		d.UpdatedAt = d.CreatedAt
	}
	d.UpdatedAt = store.Truncate(d.UpdatedAt)
	args, err := destinationArgs(d)
	if err != nil {
		return fmt.Errorf("create destination %s: %w", d.ID, err)
	}
	err = db.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO destinations (`+destinationColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`, args...); err != nil {
			return conflict(err)
		}
		for _, k := range keys {
			if k.DestinationID == "" {
				k.DestinationID = d.ID
			}
			if k.DestinationID != d.ID {
				return fmt.Errorf("key %s belongs to destination %s", k.KID, k.DestinationID)
			}
			k.CreatedAt = store.OrNow(k.CreatedAt)
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return auditDestination(ctx, tx, actor, "destination.create", nil, d, false)
	})
	if err != nil {
		return fmt.Errorf("create destination %s: %w", d.ID, err)
	}
	return nil
}

// UpdateDestination applies update to destination id with its row locked
// (SELECT … FOR UPDATE) and audits "destination.update". update must not
// write to the same destination through the store: it would wait for
// itself. It may not change the id; the creation time stays and UpdatedAt
// becomes now.
func (db *DB) UpdateDestination(ctx context.Context, actor string, id string, update func(*store.Destination) error) (store.Destination, error) {
	var out store.Destination
	var updateErr error
	err := db.write(ctx, func(tx pgx.Tx) error {
		d, err := lockDestination(ctx, tx, id)
		if err != nil {
			return err
		}
		before, err := snapshot(ctx, tx, d)
		if err != nil {
			return err
		}
		created, secret := d.CreatedAt, d.CallbackSecret
		if err := update(&d); err != nil {
			updateErr = err
			return err
		}
		if d.ID != id {
			return fmt.Errorf("update may not change the id to %q", d.ID)
		}
		d.CreatedAt, d.UpdatedAt = created, store.Now()
		args, err := destinationArgs(d)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE destinations SET (`+destinationColumns+`)
			= ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) WHERE id = $14`, append(args, id)...); err != nil {
			return err
		}
		out = d
		return auditDestination(ctx, tx, actor, "destination.update", before, d, d.CallbackSecret != secret)
	})
	if updateErr != nil {
		return store.Destination{}, updateErr
	}
	if err != nil {
		return store.Destination{}, fmt.Errorf("update destination %s: %w", id, err)
	}
	return out, nil
}

// Destination returns destination id.
func (db *DB) Destination(ctx context.Context, id string) (store.Destination, error) {
	d, err := scanDestination(db.pool.QueryRow(ctx, `SELECT `+destinationColumns+` FROM destinations WHERE id = $1`, id))
	if err != nil {
		return store.Destination{}, fmt.Errorf("destination %s: %w", id, notFound(err))
	}
	return d, nil
}

// Destinations lists destinations ordered by id, with their total count.
func (db *DB) Destinations(ctx context.Context, p store.Page) ([]store.Destination, int, error) {
	p = p.Normalize()
	var (
		list  []store.Destination
		total int
	)
	err := db.read(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM destinations`).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+destinationColumns+` FROM destinations ORDER BY id LIMIT $1 OFFSET $2`, p.Limit, p.Offset)
		if err != nil {
			return err
		}
		list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Destination, error) { return scanDestination(r) })
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list destinations: %w", err)
	}
	return list, total, nil
}

// AddKey adds k to its destination and audits "key.add".
func (db *DB) AddKey(ctx context.Context, actor string, k store.Key) error {
	k.CreatedAt = store.OrNow(k.CreatedAt)
	k.ValidUntil = store.TruncatePtr(k.ValidUntil)
	err := db.write(ctx, func(tx pgx.Tx) error {
		d, err := lockDestination(ctx, tx, k.DestinationID)
		if err != nil {
			return err
		}
		before, err := snapshot(ctx, tx, d)
		if err != nil {
			return err
		}
		if err := insertKey(ctx, tx, k); err != nil {
			return err
		}
		return auditDestination(ctx, tx, actor, "key.add", before, d, false)
	})
	if err != nil {
		return fmt.Errorf("add key %s to %s: %w", k.KID, k.DestinationID, err)
	}
	return nil
}

// RollKey adds k, makes it current for its use, limits the previous
// current key to previousValidUntil and audits "key.roll".
func (db *DB) RollKey(ctx context.Context, actor string, k store.Key, previousValidUntil time.Time) (store.Destination, error) {
	k.CreatedAt = store.OrNow(k.CreatedAt)
	k.ValidUntil = store.TruncatePtr(k.ValidUntil)
	var out store.Destination
	err := db.write(ctx, func(tx pgx.Tx) error {
		d, err := lockDestination(ctx, tx, k.DestinationID)
		if err != nil {
			return err
		}
		before, err := snapshot(ctx, tx, d)
		if err != nil {
			return err
		}
		current := &d.EncryptionKID
		switch k.Use {
		case store.UseEncryption:
		case store.UseSigning:
			current = &d.SigningKID
		default:
			return fmt.Errorf("unknown key use %q", k.Use)
		}
		if err := insertKey(ctx, tx, k); err != nil {
			return err
		}
		if *current != "" {
			if _, err := tx.Exec(ctx, `UPDATE keys SET valid_until = $1 WHERE destination_id = $2 AND kid = $3`,
				store.Truncate(previousValidUntil), d.ID, *current); err != nil {
				return fmt.Errorf("limit key %s: %w", *current, err)
			}
		}
		*current = k.KID
		d.UpdatedAt = store.Now()
		if _, err := tx.Exec(ctx, `UPDATE destinations SET encryption_kid = $1, signing_kid = $2, updated_at = $3 WHERE id = $4`,
			d.EncryptionKID, d.SigningKID, d.UpdatedAt, d.ID); err != nil {
			return err
		}
		out = d
		return auditDestination(ctx, tx, actor, "key.roll", before, d, false)
	})
	if err != nil {
		return store.Destination{}, fmt.Errorf("roll key %s of %s: %w", k.KID, k.DestinationID, err)
	}
	return out, nil
}

// Key returns key kid of destination destinationID.
func (db *DB) Key(ctx context.Context, destinationID, kid string) (store.Key, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE destination_id = $1 AND kid = $2`, destinationID, kid))
	if err != nil {
		return store.Key{}, fmt.Errorf("key %s of %s: %w", kid, destinationID, notFound(err))
	}
	return k, nil
}

// Keys lists the keys of destinationID, oldest first; none for an unknown
// destination.
func (db *DB) Keys(ctx context.Context, destinationID string) ([]store.Key, error) {
	return listKeys(ctx, db.pool, destinationID)
}

const clientColumns = `id, name, secret_hash, scopes, disabled, created_at`

func scanClient(row pgx.Row) (store.Client, error) {
	var (
		c      store.Client
		scopes []byte
	)
	if err := row.Scan(&c.ID, &c.Name, &c.SecretHash, &scopes, &c.Disabled, &c.CreatedAt); err != nil {
		return c, err
	}
	utc(&c.CreatedAt)
	return c, decJSON(scopes, &c.Scopes)
}

// CreateClient inserts c and audits "client.create" without its secret hash.
func (db *DB) CreateClient(ctx context.Context, actor string, c store.Client) error {
	c.CreatedAt = store.OrNow(c.CreatedAt)
	scopes, err := encJSON(c.Scopes)
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	err = db.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.ID, c.Name, c.SecretHash, scopes, c.Disabled, c.CreatedAt); err != nil {
			return conflict(err)
		}
		return audit(ctx, tx, actor, "client.create", "client:"+c.ID, nil, c.AuditJSON())
	})
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	return nil
}

// UpdateClient applies update to client id in one transaction holding
// its row, with an audit entry of action. Its id and creation time stay.
func (db *DB) UpdateClient(ctx context.Context, actor, id, action string, update func(*store.Client) error) (store.Client, error) {
	var (
		out       store.Client
		updateErr error
	)
	err := db.write(ctx, func(tx pgx.Tx) error {
		c, err := scanClient(tx.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return notFound(err)
		}
		before := c.AuditJSON()
		if err := update(&c); err != nil {
			updateErr = err
			return err
		}
		scopes, err := encJSON(c.Scopes)
		if err != nil {
			return err
		}
		if out, err = scanClient(tx.QueryRow(ctx, `UPDATE clients SET name = $1, secret_hash = $2, scopes = $3, disabled = $4
			WHERE id = $5 RETURNING `+clientColumns, c.Name, c.SecretHash, scopes, c.Disabled, id)); err != nil {
			return err
		}
		return audit(ctx, tx, actor, action, "client:"+id, before, out.AuditJSON())
	})
	if updateErr != nil {
		return store.Client{}, updateErr
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("update client %s: %w", id, err)
	}
	return out, nil
}

// Client returns client id.
func (db *DB) Client(ctx context.Context, id string) (store.Client, error) {
	c, err := scanClient(db.pool.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1`, id))
	if err != nil {
		return store.Client{}, fmt.Errorf("client %s: %w", id, notFound(err))
	}
	return c, nil
}

// Clients lists all clients ordered by id.
func (db *DB) Clients(ctx context.Context) ([]store.Client, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+clientColumns+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Client, error) { return scanClient(r) })
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return list, nil
}

// AuditLog lists the entries of object ("" for all), newest first.
func (db *DB) AuditCount(ctx context.Context, object string) (int, error) {
	q, args := `SELECT count(*) FROM audit_log`, []any{}
	if object != "" {
		q, args = `SELECT count(*) FROM audit_log WHERE object = $1`, []any{object}
	}
	var n int
	if err := db.pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count audit log: %w", err)
	}
	return n, nil
}

func (db *DB) AuditLog(ctx context.Context, object string, p store.Page) ([]store.AuditEntry, error) {
	p = p.Normalize()
	q, args := `SELECT id, at, actor, action, object, before, after FROM audit_log
		ORDER BY id DESC LIMIT $1 OFFSET $2`, []any{p.Limit, p.Offset}
	if object != "" {
		q, args = `SELECT id, at, actor, action, object, before, after FROM audit_log
		WHERE object = $3 ORDER BY id DESC LIMIT $1 OFFSET $2`, []any{p.Limit, p.Offset, object}
	}
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AuditEntry, error) {
		var e store.AuditEntry
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Object, (*[]byte)(&e.Before), (*[]byte)(&e.After))
		utc(&e.At)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return list, nil
}
