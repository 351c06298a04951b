package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtsbote/amtsbote/pkg/store"
)

const submissionColumns = `id, case_id, destination_id, sender_client_id, service_identifier, service_name,
	region, status, announced_attachments, uploaded_attachments, callback_url, callback_secret,
	created_at, submitted_at, picked_up_at, updated_at, routed_at, deleted_at`

func scanSubmission(row pgx.Row) (store.Submission, error) {
	var (
		s                   store.Submission
		announced, uploaded []byte
	)
	if err := row.Scan(&s.ID, &s.CaseID, &s.DestinationID, &s.SenderClientID, &s.ServiceIdentifier, &s.ServiceName,
		&s.Region, &s.Status, &announced, &uploaded, &s.CallbackURL, &s.CallbackSecret,
		&s.CreatedAt, &s.SubmittedAt, &s.PickedUpAt, &s.UpdatedAt, &s.RoutedAt, &s.DeletedAt); err != nil {
		return s, err
	}
	utc(&s.CreatedAt)
	utc(&s.UpdatedAt)
	s.SubmittedAt, s.PickedUpAt = utcPtr(s.SubmittedAt), utcPtr(s.PickedUpAt)
	s.RoutedAt, s.DeletedAt = utcPtr(s.RoutedAt), utcPtr(s.DeletedAt)
	return s, errors.Join(decJSON(announced, &s.AnnouncedAttachments), decJSON(uploaded, &s.UploadedAttachments))
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
		store.Truncate(s.CreatedAt), store.TruncatePtr(s.SubmittedAt), store.TruncatePtr(s.PickedUpAt), store.Truncate(s.UpdatedAt),
		store.TruncatePtr(s.RoutedAt), store.TruncatePtr(s.DeletedAt)}, nil
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
	if _, err := db.pool.Exec(ctx, `INSERT INTO submissions (`+submissionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`, args...); err != nil {
		return fmt.Errorf("create submission %s: %w", s.ID, conflict(err))
	}
	return nil
}

// Submission returns submission id.
func (db *DB) Submission(ctx context.Context, id string) (store.Submission, error) {
	s, err := scanSubmission(db.pool.QueryRow(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE id = $1`, id))
	if err != nil {
		return store.Submission{}, fmt.Errorf("submission %s: %w", id, notFound(err))
	}
	return s, nil
}

// UpdateSubmission applies update to submission id with its row locked
// (SELECT … FOR UPDATE). update must not write to the same submission
// through the store. It may not change the id; the creation time stays and
// UpdatedAt becomes now.
func (db *DB) UpdateSubmission(ctx context.Context, id string, update func(*store.Submission) error) (store.Submission, error) {
	var out store.Submission
	var updateErr error
	err := db.write(ctx, func(tx pgx.Tx) error {
		s, err := scanSubmission(tx.QueryRow(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE id = $1 FOR UPDATE`, id))
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
		if _, err := tx.Exec(ctx, `UPDATE submissions SET (`+submissionColumns+`)
			= ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) WHERE id = $19`, append(args, id)...); err != nil {
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
	rows, err := db.pool.Query(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE case_id = $1
		ORDER BY created_at, id`, caseID)
	if err != nil {
		return nil, fmt.Errorf("submissions of case %s: %w", caseID, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Submission, error) { return scanSubmission(r) })
	if err != nil {
		return nil, fmt.Errorf("submissions of case %s: %w", caseID, err)
	}
	return list, nil
}

// pickupWhere selects what is ready for pickup at the destinations in $1,
// with the condition of the partial index submissions_pickup.
const pickupWhere = `WHERE status = 'submitted' AND routed_at IS NOT NULL
	AND destination_id = ANY($1)`

// PickupList lists the submitted, routed submissions of destinationIDs,
// fetched or not, oldest first, with their total count.
func (db *DB) PickupList(ctx context.Context, destinationIDs []string, p store.Page) ([]store.Submission, int, error) {
	if len(destinationIDs) == 0 {
		return nil, 0, nil
	}
	p = p.Normalize()
	var (
		list  []store.Submission
		total int
	)
	err := db.read(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM submissions `+pickupWhere, destinationIDs).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+submissionColumns+` FROM submissions `+pickupWhere+`
			ORDER BY created_at, id LIMIT $2 OFFSET $3`, destinationIDs, p.Limit, p.Offset)
		if err != nil {
			return err
		}
		list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Submission, error) { return scanSubmission(r) })
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("pickup list: %w", err)
	}
	return list, total, nil
}

// dueQueries select, per deadline, what it applies to before the cut-off
// in $1, ordered by the time its clock started, at most $2 rows. Each
// repeats its partial index's condition, so the planner can use the index.
var dueQueries = map[store.Deadline]string{
	store.DeadlineIncomplete: `WHERE status = 'incomplete' AND created_at < $1 ORDER BY created_at, id LIMIT $2`,
	store.DeadlinePickedUp: `WHERE picked_up_at IS NOT NULL AND status <> 'deleted'
		AND picked_up_at < $1 ORDER BY picked_up_at, id LIMIT $2`,
	store.DeadlineUnpickedReject: `WHERE picked_up_at IS NULL AND submitted_at IS NOT NULL AND status NOT IN ('incomplete', 'deleted')
		AND status = 'submitted' AND submitted_at < $1 ORDER BY submitted_at, id LIMIT $2`,
	store.DeadlineUnpickedDelete: `WHERE picked_up_at IS NULL AND submitted_at IS NOT NULL AND status NOT IN ('incomplete', 'deleted')
		AND submitted_at < $1 ORDER BY submitted_at, id LIMIT $2`,
}

// DueSubmissions lists up to limit submissions deadline d applies to at
// the cut-off before, the longest overdue first.
func (db *DB) DueSubmissions(ctx context.Context, d store.Deadline, before time.Time, limit int) ([]store.Submission, error) {
	where, ok := dueQueries[d]
	if !ok {
		return nil, fmt.Errorf("due submissions: unknown deadline %q", d)
	}
	limit = store.Page{Limit: limit}.Normalize().Limit
	rows, err := db.pool.Query(ctx, `SELECT `+submissionColumns+` FROM submissions `+where, store.Truncate(before), limit)
	if err != nil {
		return nil, fmt.Errorf("due submissions %s: %w", d, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Submission, error) { return scanSubmission(r) })
	if err != nil {
		return nil, fmt.Errorf("due submissions %s: %w", d, err)
	}
	return list, nil
}

// eventColumns are the columns scanEvent reads.
const eventColumns = `jti, case_id, submission_id, type, issuer, issued_at, token, coalesce(stream_seq, 0)`

// eventOrder lists events in stream order; events recorded before the
// stream order was kept come first, in recording order.
const eventOrder = `ORDER BY coalesce(stream_seq, 0), seq`

func scanEvent(r pgx.CollectableRow) (store.Event, error) {
	var (
		e   store.Event
		seq int64
	)
	err := r.Scan(&e.JTI, &e.CaseID, &e.SubmissionID, &e.Type, &e.Issuer, &e.IssuedAt, &e.Token, &seq)
	utc(&e.IssuedAt)
	e.StreamSeq = uint64(seq)
	return e, err
}

// ProjectEvent records e unless its JTI is recorded and refolds its
// submission's progress, in one transaction that first locks the
// submission's row, so that concurrent projections of one submission see
// each other's events.
func (db *DB) ProjectEvent(ctx context.Context, e store.Event, fold store.Fold) (store.Projection, error) {
	var out store.Projection
	err := db.write(ctx, func(tx pgx.Tx) error {
		out = store.Projection{}
		s, err := scanSubmission(tx.QueryRow(ctx, `SELECT `+submissionColumns+` FROM submissions WHERE id = $1 FOR UPDATE`, e.SubmissionID))
		known := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if known && !strings.EqualFold(s.CaseID, e.CaseID) {
			return fmt.Errorf("submission %s is of case %s, not %s: %w", s.ID, s.CaseID, e.CaseID, store.ErrConflict)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO events (jti, case_id, submission_id, type, issuer, issued_at, token, stream_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (jti) DO NOTHING`,
			e.JTI, e.CaseID, e.SubmissionID, e.Type, e.Issuer, store.Truncate(e.IssuedAt), e.Token, int64(e.StreamSeq))
		if err != nil {
			return err
		}
		out.Recorded = tag.RowsAffected() == 1
		if !known {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE submission_id = $1 `+eventOrder, e.SubmissionID)
		if err != nil {
			return err
		}
		evs, err := pgx.CollectRows(rows, scanEvent)
		if err != nil {
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
		_, err = tx.Exec(ctx, `UPDATE submissions SET status = $1, submitted_at = $2, picked_up_at = $3, deleted_at = $4, updated_at = $5
			WHERE id = $6`, string(s.Status), s.SubmittedAt, s.PickedUpAt, s.DeletedAt, s.UpdatedAt, s.ID)
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
	err := db.read(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM events WHERE case_id = $1`, caseID).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+eventColumns+`
			FROM events WHERE case_id = $1 `+eventOrder+` LIMIT $2 OFFSET $3`, caseID, p.Limit, p.Offset)
		if err != nil {
			return err
		}
		list, err = pgx.CollectRows(rows, scanEvent)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("events of case %s: %w", caseID, err)
	}
	return list, total, nil
}

// PutIdempotency stores r unless r.Key is taken, and returns the stored
// record and whether it is r. A concurrent insert of the same key waits for
// the first to commit and then reads it.
func (db *DB) PutIdempotency(ctx context.Context, r store.IdempotencyRecord) (store.IdempotencyRecord, bool, error) {
	r.CreatedAt = store.OrNow(r.CreatedAt)
	tag, err := db.pool.Exec(ctx, `INSERT INTO idempotency (key, request_hash, status, body, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING`,
		r.Key, r.RequestHash, r.Status, r.Body, r.CreatedAt)
	if err != nil {
		return store.IdempotencyRecord{}, false, fmt.Errorf("put idempotency record %s: %w", r.Key, err)
	}
	if tag.RowsAffected() == 1 {
		return r, true, nil
	}
	var out store.IdempotencyRecord
	if err := db.pool.QueryRow(ctx, `SELECT key, request_hash, status, body, created_at FROM idempotency WHERE key = $1`, r.Key).
		Scan(&out.Key, &out.RequestHash, &out.Status, &out.Body, &out.CreatedAt); err != nil {
		return store.IdempotencyRecord{}, false, fmt.Errorf("put idempotency record %s: %w", r.Key, err)
	}
	utc(&out.CreatedAt)
	return out, false, nil
}

// Idempotency returns the record stored under key.
func (db *DB) Idempotency(ctx context.Context, key string) (store.IdempotencyRecord, error) {
	var r store.IdempotencyRecord
	err := db.pool.QueryRow(ctx, `SELECT key, request_hash, status, body, created_at FROM idempotency WHERE key = $1`, key).
		Scan(&r.Key, &r.RequestHash, &r.Status, &r.Body, &r.CreatedAt)
	if err != nil {
		return store.IdempotencyRecord{}, fmt.Errorf("idempotency record %s: %w", key, notFound(err))
	}
	utc(&r.CreatedAt)
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
		args = make([]any, len(cutoffs))
	)
	for i, c := range cutoffs {
		args[i] = store.Truncate(c)
		fmt.Fprintf(&cols, ", count(*) FILTER (WHERE submitted_at < $%d)", i+1)
	}
	rows, err := db.pool.Query(ctx, `SELECT destination_id, min(submitted_at)`+cols.String()+` FROM submissions
		WHERE picked_up_at IS NULL AND submitted_at IS NOT NULL AND status NOT IN ('incomplete', 'deleted')
		AND status = 'submitted' AND submitted_at < $1
		GROUP BY destination_id ORDER BY min(submitted_at), destination_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("overdue: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.OverdueDestination, error) {
		o := store.OverdueDestination{Counts: make([]int, len(cutoffs))}
		dest := []any{&o.DestinationID, &o.Oldest}
		counts := make([]int64, len(cutoffs))
		for i := range counts {
			dest = append(dest, &counts[i])
		}
		if err := r.Scan(dest...); err != nil {
			return o, err
		}
		for i, n := range counts {
			o.Counts[i] = int(n)
		}
		o.Oldest = o.Oldest.UTC()
		return o, nil
	})
	if err != nil {
		return nil, fmt.Errorf("overdue: %w", err)
	}
	return list, nil
}
