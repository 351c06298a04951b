package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/store"
)

const submissionColumns = `id, case_id, destination_id, sender_client_id, service_identifier, service_name,
	region, status, announced_attachments, uploaded_attachments, callback_url, callback_secret,
	created_at, submitted_at, picked_up_at, updated_at, routed_at, deleted_at`

func scanSubmission(row scanner) (store.Submission, error) {
	var (
		s                   store.Submission
		announced, uploaded string
		created, updated    string
		submitted, picked   sql.NullString
		routed, deleted     sql.NullString
	)
	if err := row.Scan(&s.ID, &s.CaseID, &s.DestinationID, &s.SenderClientID, &s.ServiceIdentifier, &s.ServiceName,
		&s.Region, &s.Status, &announced, &uploaded, &s.CallbackURL, &s.CallbackSecret,
		&created, &submitted, &picked, &updated, &routed, &deleted); err != nil {
		return s, err
	}
	var e1, e2, e3, e4, e5, e6 error
	s.CreatedAt, e1 = decTime(created)
	s.UpdatedAt, e2 = decTime(updated)
	s.SubmittedAt, e3 = decTimePtr(submitted)
	s.PickedUpAt, e4 = decTimePtr(picked)
	s.RoutedAt, e5 = decTimePtr(routed)
	s.DeletedAt, e6 = decTimePtr(deleted)
	return s, errors.Join(e1, e2, e3, e4, e5, e6, decJSON(announced, &s.AnnouncedAttachments), decJSON(uploaded, &s.UploadedAttachments))
}

// submissionArgs returns s's columns in submissionColumns order.
func submissionArgs(s store.Submission) ([]any, error) {
	announced, err1 := encJSON(s.AnnouncedAttachments)
	uploaded, err2 := encJSON(s.UploadedAttachments)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return []any{s.ID, s.CaseID, s.DestinationID, s.SenderClientID, s.ServiceIdentifier, s.ServiceName,
		s.Region, string(s.Status), announced, uploaded, s.CallbackURL, s.CallbackSecret,
		encTime(s.CreatedAt), encTimePtr(s.SubmittedAt), encTimePtr(s.PickedUpAt), encTime(s.UpdatedAt),
		encTimePtr(s.RoutedAt), encTimePtr(s.DeletedAt)}, nil
}

// normSubmission returns s with its times as the store keeps them.
func normSubmission(s store.Submission) store.Submission {
	s.CreatedAt, s.UpdatedAt = store.Truncate(s.CreatedAt), store.Truncate(s.UpdatedAt)
	s.SubmittedAt, s.PickedUpAt = store.TruncatePtr(s.SubmittedAt), store.TruncatePtr(s.PickedUpAt)
	s.RoutedAt, s.DeletedAt = store.TruncatePtr(s.RoutedAt), store.TruncatePtr(s.DeletedAt)
	return s
}

// CreateSubmission inserts s; a zero CreatedAt becomes now and a zero
// UpdatedAt the creation time.
func (db *DB) CreateSubmission(ctx context.Context, s store.Submission) error {
	s.CreatedAt = store.OrNow(s.CreatedAt)
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = s.CreatedAt
	}
	args, err := submissionArgs(s)
	if err != nil {
		return fmt.Errorf("create submission %s: %w", s.ID, err)
	}
	err = db.write(ctx, func(tx *txn) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO submissions (`+submissionColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
		return conflict(err)
	})
	if err != nil {
		return fmt.Errorf("create submission %s: %w", s.ID, err)
	}
	return nil
}

// Submission returns submission id.
func (db *DB) Submission(ctx context.Context, id string) (store.Submission, error) {
	s, err := scanSubmission(db.rs.QueryRowContext(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE id = ?`, id))
	if err != nil {
		return store.Submission{}, fmt.Errorf("submission %s: %w", id, notFound(err))
	}
	return s, nil
}

// UpdateSubmission applies update to submission id in one write
// transaction. update must not call the store to write. It may not change
// the id; the creation time stays and UpdatedAt becomes now.
func (db *DB) UpdateSubmission(ctx context.Context, id string, update func(*store.Submission) error) (store.Submission, error) {
	var out store.Submission
	var updateErr error
	err := db.write(ctx, func(tx *txn) error {
		s, err := scanSubmission(tx.QueryRowContext(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE id = ?`, id))
		if err != nil {
			return notFound(err)
		}
		created := s.CreatedAt
		if err := update(&s); err != nil {
			updateErr = err
			return err
		}
		if s.ID != id {
			return fmt.Errorf("update may not change the id to %q", s.ID)
		}
		s.CreatedAt, s.UpdatedAt = created, store.Now()
		s = normSubmission(s)
		args, err := submissionArgs(s)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE submissions SET (`+submissionColumns+`)
			= (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id = ?`, append(args, id)...); err != nil {
			return err
		}
		out = s
		return nil
	})
	if updateErr != nil {
		return store.Submission{}, updateErr
	}
	if err != nil {
		return store.Submission{}, fmt.Errorf("update submission %s: %w", id, err)
	}
	return out, nil
}

// SubmissionsByCase lists the submissions of caseID, oldest first.
func (db *DB) SubmissionsByCase(ctx context.Context, caseID string) ([]store.Submission, error) {
	rows, err := db.rs.QueryContext(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE case_id = ?
		ORDER BY created_at, id`, caseID)
	if err != nil {
		return nil, fmt.Errorf("submissions of case %s: %w", caseID, err)
	}
	defer rows.Close()
	var list []store.Submission
	for rows.Next() {
		s, err := scanSubmission(rows)
		if err != nil {
			return nil, fmt.Errorf("submissions of case %s: %w", caseID, err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("submissions of case %s: %w", caseID, err)
	}
	return list, nil
}

// pickupWhere selects what is ready for pickup at the destinations in the
// JSON array bound to it. It repeats the condition of the partial index
// submissions_pickup, so SQLite uses the index.
const pickupWhere = `WHERE status = 'submitted' AND routed_at IS NOT NULL
	AND destination_id IN (SELECT value FROM json_each(?))`

// PickupList lists the submitted, routed submissions of destinationIDs,
// fetched or not, oldest first, with their total count.
func (db *DB) PickupList(ctx context.Context, destinationIDs []string, p store.Page) ([]store.Submission, int, error) {
	if len(destinationIDs) == 0 {
		return nil, 0, nil
	}
	p = p.Normalize()
	ids, err := encJSON(destinationIDs)
	if err != nil {
		return nil, 0, fmt.Errorf("pickup list: %w", err)
	}
	var (
		list  []store.Submission
		total int
	)
	err = db.read(ctx, func(tx *txn) error {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM submissions `+pickupWhere, ids).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+submissionColumns+` FROM submissions `+pickupWhere+`
			ORDER BY created_at, id LIMIT ? OFFSET ?`, ids, p.Limit, p.Offset)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			s, err := scanSubmission(rows)
			if err != nil {
				return err
			}
			list = append(list, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("pickup list: %w", err)
	}
	return list, total, nil
}

// dueQueries select, per deadline, what it applies to before the cut-off
// bound to them, ordered by the time its clock started. Each repeats its
// partial index's condition word for word, so SQLite uses the index.
var dueQueries = map[store.Deadline]string{
	store.DeadlineIncomplete: `WHERE status = 'incomplete' AND created_at < ? ORDER BY created_at, id`,
	store.DeadlinePickedUp: `WHERE picked_up_at IS NOT NULL AND status <> 'deleted'
		AND picked_up_at < ? ORDER BY picked_up_at, id`,
	store.DeadlineUnpickedReject: `WHERE picked_up_at IS NULL AND submitted_at IS NOT NULL AND status NOT IN ('incomplete', 'deleted')
		AND status = 'submitted' AND submitted_at < ? ORDER BY submitted_at, id`,
	store.DeadlineUnpickedDelete: `WHERE picked_up_at IS NULL AND submitted_at IS NOT NULL AND status NOT IN ('incomplete', 'deleted')
		AND submitted_at < ? ORDER BY submitted_at, id`,
}

// DueSubmissions lists up to limit submissions deadline d applies to at
// the cut-off before, the longest overdue first.
func (db *DB) DueSubmissions(ctx context.Context, d store.Deadline, before time.Time, limit int) ([]store.Submission, error) {
	where, ok := dueQueries[d]
	if !ok {
		return nil, fmt.Errorf("due submissions: unknown deadline %q", d)
	}
	limit = store.Page{Limit: limit}.Normalize().Limit
	rows, err := db.rs.QueryContext(ctx, `SELECT `+submissionColumns+` FROM submissions `+where+` LIMIT ?`, encTime(before), limit)
	if err != nil {
		return nil, fmt.Errorf("due submissions %s: %w", d, err)
	}
	defer rows.Close()
	var list []store.Submission
	for rows.Next() {
		s, err := scanSubmission(rows)
		if err != nil {
			return nil, fmt.Errorf("due submissions %s: %w", d, err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due submissions %s: %w", d, err)
	}
	return list, nil
}

// eventColumns are the columns scanEvent reads.
const eventColumns = `jti, case_id, submission_id, type, issuer, issued_at, token, coalesce(stream_seq, 0)`

// eventOrder lists events in stream order; events recorded before the
// stream order was kept come first, in recording order.
const eventOrder = `ORDER BY coalesce(stream_seq, 0), seq`

func scanEvent(row scanner) (store.Event, error) {
	var (
		e      store.Event
		issued string
		seq    int64
	)
	if err := row.Scan(&e.JTI, &e.CaseID, &e.SubmissionID, &e.Type, &e.Issuer, &issued, &e.Token, &seq); err != nil {
		return e, err
	}
	e.StreamSeq = uint64(seq)
	var err error
	e.IssuedAt, err = decTime(issued)
	return e, err
}

// ProjectEvent records e unless its JTI is recorded and refolds its
// submission's progress, in one write transaction (SQLite has one writer).
func (db *DB) ProjectEvent(ctx context.Context, e store.Event, fold store.Fold) (store.Projection, error) {
	var out store.Projection
	err := db.write(ctx, func(tx *txn) error {
		out = store.Projection{}
		s, err := scanSubmission(tx.QueryRowContext(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE id = ?`, e.SubmissionID))
		known := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if known && !strings.EqualFold(s.CaseID, e.CaseID) {
			return fmt.Errorf("submission %s is of case %s, not %s: %w", s.ID, s.CaseID, e.CaseID, store.ErrConflict)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO events (jti, case_id, submission_id, type, issuer, issued_at, token, stream_seq)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (jti) DO NOTHING`,
			e.JTI, e.CaseID, e.SubmissionID, e.Type, e.Issuer, encTime(e.IssuedAt), e.Token, int64(e.StreamSeq))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		out.Recorded = n == 1
		if !known {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE submission_id = ? `+eventOrder, e.SubmissionID)
		if err != nil {
			return err
		}
		var evs []store.Event
		for rows.Next() {
			ev, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return err
			}
			evs = append(evs, ev)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		before := s.Progress
		fold(&s, evs)
		s = normSubmission(s)
		out.Submission = s
		if s.Progress.Equal(before) {
			return nil
		}
		s.UpdatedAt = store.Now()
		out.Submission, out.Changed = s, true
		_, err = tx.ExecContext(ctx, `UPDATE submissions SET status = ?, submitted_at = ?, picked_up_at = ?, deleted_at = ?, updated_at = ?
			WHERE id = ?`, string(s.Status), encTimePtr(s.SubmittedAt), encTimePtr(s.PickedUpAt), encTimePtr(s.DeletedAt),
			encTime(s.UpdatedAt), s.ID)
		return err
	})
	if err != nil {
		return store.Projection{}, fmt.Errorf("project event %s: %w", e.JTI, err)
	}
	if out.Submission.ID == "" {
		return out, fmt.Errorf("project event %s: submission %s: %w", e.JTI, e.SubmissionID, store.ErrNotFound)
	}
	return out, nil
}

// Events lists the events of caseID in stream order, with their total.
func (db *DB) Events(ctx context.Context, caseID string, p store.Page) ([]store.Event, int, error) {
	p = p.Normalize()
	var (
		list  []store.Event
		total int
	)
	err := db.read(ctx, func(tx *txn) error {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE case_id = ?`, caseID).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+eventColumns+`
			FROM events WHERE case_id = ? `+eventOrder+` LIMIT ? OFFSET ?`, caseID, p.Limit, p.Offset)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			list = append(list, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("events of case %s: %w", caseID, err)
	}
	return list, total, nil
}

// PutIdempotency stores r unless r.Key is taken, and returns the stored
// record and whether it is r.
func (db *DB) PutIdempotency(ctx context.Context, r store.IdempotencyRecord) (store.IdempotencyRecord, bool, error) {
	r.CreatedAt = store.OrNow(r.CreatedAt)
	var (
		out     store.IdempotencyRecord
		created bool
	)
	err := db.write(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO idempotency (key, request_hash, status, body, created_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`,
			r.Key, r.RequestHash, r.Status, r.Body, encTime(r.CreatedAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			out, created = r, true
			return nil
		}
		var at string
		if err := tx.QueryRowContext(ctx, `SELECT key, request_hash, status, body, created_at FROM idempotency WHERE key = ?`, r.Key).
			Scan(&out.Key, &out.RequestHash, &out.Status, &out.Body, &at); err != nil {
			return err
		}
		out.CreatedAt, err = decTime(at)
		return err
	})
	if err != nil {
		return store.IdempotencyRecord{}, false, fmt.Errorf("put idempotency record %s: %w", r.Key, err)
	}
	return out, created, nil
}

// Idempotency returns the record stored under key.
func (db *DB) Idempotency(ctx context.Context, key string) (store.IdempotencyRecord, error) {
	var (
		r  store.IdempotencyRecord
		at string
	)
	err := db.rs.QueryRowContext(ctx, `SELECT key, request_hash, status, body, created_at FROM idempotency WHERE key = ?`, key).
		Scan(&r.Key, &r.RequestHash, &r.Status, &r.Body, &at)
	if err != nil {
		return store.IdempotencyRecord{}, fmt.Errorf("idempotency record %s: %w", key, notFound(err))
	}
	if r.CreatedAt, err = decTime(at); err != nil {
		return store.IdempotencyRecord{}, fmt.Errorf("idempotency record %s: %w", key, err)
	}
	return r, nil
}

// Overdue counts each destination's submissions waiting for pickup
// before each cut-off, in one pass over the unpicked-reject index.
func (db *DB) Overdue(ctx context.Context, cutoffs []time.Time) ([]store.OverdueDestination, error) {
	if err := store.CheckCutoffs(cutoffs); err != nil {
		return nil, err
	}
	var (
		cols strings.Builder
		args []any
	)
	for _, c := range cutoffs {
		args = append(args, encTime(c))
		cols.WriteString(", sum(CASE WHEN submitted_at < ? THEN 1 ELSE 0 END)")
	}
	args = append(args, encTime(cutoffs[0]))
	rows, err := db.rs.QueryContext(ctx, `SELECT destination_id, min(submitted_at)`+cols.String()+` FROM submissions
		WHERE picked_up_at IS NULL AND submitted_at IS NOT NULL AND status NOT IN ('incomplete', 'deleted')
		AND status = 'submitted' AND submitted_at < ?
		GROUP BY destination_id ORDER BY min(submitted_at), destination_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("overdue: %w", err)
	}
	defer rows.Close()
	var list []store.OverdueDestination
	for rows.Next() {
		var (
			o      = store.OverdueDestination{Counts: make([]int, len(cutoffs))}
			oldest string
		)
		dest := []any{&o.DestinationID, &oldest}
		for i := range o.Counts {
			dest = append(dest, &o.Counts[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("overdue: %w", err)
		}
		if o.Oldest, err = decTime(oldest); err != nil {
			return nil, fmt.Errorf("overdue: %w", err)
		}
		list = append(list, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("overdue: %w", err)
	}
	return list, nil
}
