package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/amtsbote/amtsbote/pkg/store"
)

const destinationColumns = `id, status, contact, services, encryption_kid, signing_kid,
	metadata_versions, reply_channels, home_region, callback_url, callback_secret, created_at, updated_at`

func scanDestination(row scanner) (store.Destination, error) {
	var (
		d                           store.Destination
		contact, services, versions string
		replyChannels               sql.NullString
		created, updated            string
	)
	if err := row.Scan(&d.ID, &d.Status, &contact, &services, &d.EncryptionKID, &d.SigningKID,
		&versions, &replyChannels, &d.HomeRegion, &d.CallbackURL, &d.CallbackSecret, &created, &updated); err != nil {
		return d, err
	}
	d.ReplyChannels = decRaw(replyChannels)
	var err error
	if d.CreatedAt, err = decTime(created); err != nil {
		return d, err
	}
	if d.UpdatedAt, err = decTime(updated); err != nil {
		return d, err
	}
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
		encTime(d.CreatedAt), encTime(d.UpdatedAt)}, nil
}

func getDestination(ctx context.Context, tx *txn, id string) (store.Destination, error) {
	d, err := scanDestination(tx.QueryRowContext(ctx, `SELECT `+destinationColumns+` FROM destinations WHERE id = ?`, id))
	if err != nil {
		return d, fmt.Errorf("destination %s: %w", id, notFound(err))
	}
	return d, nil
}

const keyColumns = `destination_id, kid, use, jwk, created_at, valid_until`

func scanKey(row scanner) (store.Key, error) {
	var (
		k       store.Key
		jwk     string
		created string
		until   sql.NullString
	)
	if err := row.Scan(&k.DestinationID, &k.KID, &k.Use, &jwk, &created, &until); err != nil {
		return k, err
	}
	k.JWK = json.RawMessage(jwk)
	var err error
	if k.CreatedAt, err = decTime(created); err != nil {
		return k, err
	}
	k.ValidUntil, err = decTimePtr(until)
	return k, err
}

func insertKey(ctx context.Context, tx *txn, k store.Key) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		k.DestinationID, k.KID, string(k.Use), rawJSON(k.JWK), encTime(k.CreatedAt), encTimePtr(k.ValidUntil))
	if err != nil {
		return fmt.Errorf("insert key %s: %w", k.KID, conflict(err))
	}
	return nil
}

func listKeys(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, destinationID string) ([]store.Key, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE destination_id = ? ORDER BY created_at, seq`, destinationID)
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", destinationID, err)
	}
	defer rows.Close()
	var keys []store.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("keys of %s: %w", destinationID, err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys of %s: %w", destinationID, err)
	}
	return keys, nil
}

// audit appends one entry to the audit log inside tx.
func audit(ctx context.Context, tx *txn, actor, action, object string, before, after []byte) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action, object, before, after) VALUES (?, ?, ?, ?, ?, ?)`,
		encTime(store.Now()), actor, action, object, rawJSON(before), rawJSON(after))
	if err != nil {
		return fmt.Errorf("audit %s %s: %w", action, object, err)
	}
	return nil
}

// Audit appends e to the audit log.
func (db *DB) Audit(ctx context.Context, e store.AuditEntry) error {
	return db.write(ctx, func(tx *txn) error {
		return audit(ctx, tx, e.Actor, e.Action, e.Object, e.Before, e.After)
	})
}

// auditDestination records a change of destination d, reading its keys
// after the change.
func auditDestination(ctx context.Context, tx *txn, actor, action string, before []byte, d store.Destination, secretChanged bool) error {
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

// snapshot returns the audit record of destination d as it is in tx.
func snapshot(ctx context.Context, tx *txn, d store.Destination) ([]byte, error) {
	keys, err := listKeys(ctx, tx, d.ID)
	if err != nil {
		return nil, err
	}
	return d.AuditJSON(keys)
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
	err = db.write(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO destinations (`+destinationColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...); err != nil {
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

// UpdateDestination applies update to destination id in one write
// transaction and audits "destination.update". update must not call the
// store to write: the write connection is held while it runs. It may not
// change the id; the creation time stays and UpdatedAt becomes now.
func (db *DB) UpdateDestination(ctx context.Context, actor string, id string, update func(*store.Destination) error) (store.Destination, error) {
	var out store.Destination
	var updateErr error
	err := db.write(ctx, func(tx *txn) error {
		d, err := getDestination(ctx, tx, id)
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
		if _, err := tx.ExecContext(ctx, `UPDATE destinations SET (`+destinationColumns+`)
			= (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id = ?`, append(args, id)...); err != nil {
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
	d, err := scanDestination(db.rs.QueryRowContext(ctx, `SELECT `+destinationColumns+` FROM destinations WHERE id = ?`, id))
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
	err := db.read(ctx, func(tx *txn) error {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM destinations`).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+destinationColumns+` FROM destinations ORDER BY id LIMIT ? OFFSET ?`, p.Limit, p.Offset)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDestination(rows)
			if err != nil {
				return err
			}
			list = append(list, d)
		}
		return rows.Err()
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
	err := db.write(ctx, func(tx *txn) error {
		d, err := getDestination(ctx, tx, k.DestinationID)
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
	err := db.write(ctx, func(tx *txn) error {
		d, err := getDestination(ctx, tx, k.DestinationID)
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
			if _, err := tx.ExecContext(ctx, `UPDATE keys SET valid_until = ? WHERE destination_id = ? AND kid = ?`,
				encTime(previousValidUntil), d.ID, *current); err != nil {
				return fmt.Errorf("limit key %s: %w", *current, err)
			}
		}
		*current = k.KID
		d.UpdatedAt = store.Now()
		if _, err := tx.ExecContext(ctx, `UPDATE destinations SET encryption_kid = ?, signing_kid = ?, updated_at = ? WHERE id = ?`,
			d.EncryptionKID, d.SigningKID, encTime(d.UpdatedAt), d.ID); err != nil {
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
	k, err := scanKey(db.rs.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE destination_id = ? AND kid = ?`, destinationID, kid))
	if err != nil {
		return store.Key{}, fmt.Errorf("key %s of %s: %w", kid, destinationID, notFound(err))
	}
	return k, nil
}

// Keys lists the keys of destinationID, oldest first; none for an unknown
// destination.
func (db *DB) Keys(ctx context.Context, destinationID string) ([]store.Key, error) {
	return listKeys(ctx, db.rs, destinationID)
}

const clientColumns = `id, name, secret_hash, scopes, disabled, created_at`

func scanClient(row scanner) (store.Client, error) {
	var (
		c       store.Client
		scopes  string
		created string
	)
	if err := row.Scan(&c.ID, &c.Name, &c.SecretHash, &scopes, &c.Disabled, &created); err != nil {
		return c, err
	}
	var err error
	if c.CreatedAt, err = decTime(created); err != nil {
		return c, err
	}
	return c, decJSON(scopes, &c.Scopes)
}

// CreateClient inserts c and audits "client.create" without its secret hash.
func (db *DB) CreateClient(ctx context.Context, actor string, c store.Client) error {
	c.CreatedAt = store.OrNow(c.CreatedAt)
	scopes, err := encJSON(c.Scopes)
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	err = db.write(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			c.ID, c.Name, c.SecretHash, scopes, c.Disabled, encTime(c.CreatedAt)); err != nil {
			return conflict(err)
		}
		return audit(ctx, tx, actor, "client.create", "client:"+c.ID, nil, c.AuditJSON())
	})
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	return nil
}

// UpdateClient applies update to client id in one write transaction,
// with an audit entry of action. Its id and creation time stay.
func (db *DB) UpdateClient(ctx context.Context, actor, id, action string, update func(*store.Client) error) (store.Client, error) {
	var (
		out       store.Client
		updateErr error
	)
	err := db.write(ctx, func(tx *txn) error {
		c, err := scanClient(tx.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = ?`, id))
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
		if _, err := tx.ExecContext(ctx, `UPDATE clients SET name = ?, secret_hash = ?, scopes = ?, disabled = ? WHERE id = ?`,
			c.Name, c.SecretHash, scopes, c.Disabled, id); err != nil {
			return err
		}
		if out, err = scanClient(tx.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = ?`, id)); err != nil {
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
	c, err := scanClient(db.rs.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = ?`, id))
	if err != nil {
		return store.Client{}, fmt.Errorf("client %s: %w", id, notFound(err))
	}
	return c, nil
}

// Clients lists all clients ordered by id.
func (db *DB) Clients(ctx context.Context) ([]store.Client, error) {
	rows, err := db.rs.QueryContext(ctx, `SELECT `+clientColumns+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	defer rows.Close()
	var list []store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return list, nil
}

// AuditLog lists the entries of object ("" for all), newest first.
func (db *DB) AuditCount(ctx context.Context, object string) (int, error) {
	q, args := `SELECT count(*) FROM audit_log`, []any{}
	if object != "" {
		q, args = `SELECT count(*) FROM audit_log WHERE object = ?`, []any{object}
	}
	var n int
	if err := db.rs.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count audit log: %w", err)
	}
	return n, nil
}

func (db *DB) AuditLog(ctx context.Context, object string, p store.Page) ([]store.AuditEntry, error) {
	p = p.Normalize()
	q, args := `SELECT id, at, actor, action, object, before, after FROM audit_log
		ORDER BY id DESC LIMIT ? OFFSET ?`, []any{p.Limit, p.Offset}
	if object != "" {
		q, args = `SELECT id, at, actor, action, object, before, after FROM audit_log
		WHERE object = ? ORDER BY id DESC LIMIT ? OFFSET ?`, []any{object, p.Limit, p.Offset}
	}
	rows, err := db.rs.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer rows.Close()
	var list []store.AuditEntry
	for rows.Next() {
		var (
			e             store.AuditEntry
			at            string
			before, after sql.NullString
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Object, &before, &after); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		if e.At, err = decTime(at); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		e.Before, e.After = decRaw(before), decRaw(after)
		list = append(list, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return list, nil
}
