package sink

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

// Defaults and bounds of a Postgres sink.
const (
	DefaultPostgresTable = "submissions"
	// DefaultPostgresMaxAttachment bounds an attachment by default.
	DefaultPostgresMaxAttachment = 128 << 20
	// MaxPostgresAttachment is the largest bound a Postgres sink accepts:
	// the server holds a COPY row in memory, about twice over (five times
	// over when an attachment's size is unknown and it travels as hex),
	// and a bytea value is limited to 1 GB.
	MaxPostgresAttachment = 256 << 20
	// attachmentSuffix names the attachments table after the submissions
	// table.
	attachmentSuffix = "_attachments"
)

// identifierRE accepts the PostgreSQL identifiers that need no quoting.
var identifierRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// PostgresConfig configures a Postgres sink.
type PostgresConfig struct {
	// URL is the database: a postgres:// URL or key=value string as pgx
	// reads them.
	URL string
	// Schema holds the tables and must exist; the first schema of the
	// connection's search_path when empty.
	Schema string
	// Table names the submissions table, DefaultPostgresTable when empty;
	// the attachments live in Table + "_attachments". Both are lower-case
	// identifiers ([a-z_][a-z0-9_]*), the table at most 51 characters.
	Table string
	// MaxAttachment bounds one attachment in bytes, at most
	// MaxPostgresAttachment; DefaultPostgresMaxAttachment when zero.
	MaxAttachment int64
	// Conns is the pool's size where the URL does not set pool_max_conns:
	// the subscriber's concurrency, since each delivery holds a connection
	// for its transaction. pgx's default when zero.
	Conns int32
}

// Postgres is a Sink that inserts each submission into a table, and its
// attachments into a second one, in one transaction:
//
//	<table> (submission_id uuid PRIMARY KEY, case_id uuid, destination_id uuid,
//	         service_identifier text, metadata jsonb, data bytea NULL,
//	         data_mime_type text NULL, received_at timestamptz DEFAULT now())
//	<table>_attachments (submission_id uuid REFERENCES <table> ON DELETE CASCADE,
//	         attachment_id uuid, position integer, filename text,
//	         mime_type text, content bytea, PRIMARY KEY (submission_id, attachment_id))
//
// OpenPostgres creates both tables if they are absent. The submission's
// row is inserted first with ON CONFLICT (submission_id) DO NOTHING: when
// it is there, Deliver does nothing; when another transaction is
// inserting it, Deliver waits for that transaction's outcome. Attachments
// are streamed with COPY (binary when every size is known), each bounded
// by MaxAttachment; filename is the name from Filenames, position the
// attachment's index.
type Postgres struct {
	pool          *pgxpool.Pool
	table         string // quoted, schema-qualified
	attachments   string
	maxAttachment int64
}

var _ Sink = (*Postgres)(nil)

// Check reports whether c is well-formed, as OpenPostgres checks it
// before it connects.
func (c PostgresConfig) Check() error {
	return checkPostgresConfig(c.withDefaults())
}

func (c PostgresConfig) withDefaults() PostgresConfig {
	if c.Table == "" {
		c.Table = DefaultPostgresTable
	}
	if c.MaxAttachment == 0 {
		c.MaxAttachment = DefaultPostgresMaxAttachment
	}
	return c
}

// OpenPostgres connects, checks cfg and creates the tables if they are
// absent. Processes may open the same tables at once.
func OpenPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	cfg = cfg.withDefaults()
	if err := checkPostgresConfig(cfg); err != nil {
		return nil, permanent(fmt.Errorf("postgres sink: %w", err))
	}
	pc, err := postgres.PoolConfig(cfg.URL, cfg.Conns)
	if err != nil {
		// pgx's message quotes the URL, password and all.
		return nil, permanent(errors.New("postgres sink: cannot parse the database url"))
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, pgError(fmt.Errorf("postgres sink: %w", err))
	}
	s := &Postgres{pool: pool, maxAttachment: cfg.MaxAttachment}
	if err := s.setup(ctx, cfg); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	return s, nil
}

func checkPostgresConfig(cfg PostgresConfig) error {
	if cfg.URL == "" {
		return errors.New("no database url")
	}
	if cfg.Schema != "" && (!identifierRE.MatchString(cfg.Schema) || len(cfg.Schema) > 63) {
		return fmt.Errorf("schema %q: must match %s, at most 63 characters", cfg.Schema, identifierRE)
	}
	if !identifierRE.MatchString(cfg.Table) || len(cfg.Table) > 63-len(attachmentSuffix) {
		return fmt.Errorf("table %q: must match %s, at most %d characters", cfg.Table, identifierRE, 63-len(attachmentSuffix))
	}
	if cfg.MaxAttachment < 0 || cfg.MaxAttachment > MaxPostgresAttachment {
		return fmt.Errorf("max attachment %d: must be 1 to %d bytes", cfg.MaxAttachment, MaxPostgresAttachment)
	}
	return nil
}

// setup creates the tables under an advisory lock, so that processes
// starting together do not race on CREATE TABLE IF NOT EXISTS.
func (s *Postgres) setup(ctx context.Context, cfg PostgresConfig) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		schema := cfg.Schema
		if schema == "" {
			var current *string
			if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&current); err != nil {
				return pgError(err)
			}
			if current == nil {
				return permanent(errors.New("no schema of the search_path exists"))
			}
			schema = *current
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
			return pgError(err)
		}
		if !exists {
			return permanent(fmt.Errorf("schema %q does not exist", schema))
		}
		s.table = pgx.Identifier{schema, cfg.Table}.Sanitize()
		s.attachments = pgx.Identifier{schema, cfg.Table + attachmentSuffix}.Sanitize()
		h := fnv.New64a()
		h.Write([]byte("amtsbote sink " + schema + "." + cfg.Table))
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
			return pgError(err)
		}
		ddl := fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
	submission_id      uuid PRIMARY KEY,
	case_id            uuid NOT NULL,
	destination_id     uuid NOT NULL,
	service_identifier text NOT NULL,
	metadata           jsonb NOT NULL,
	data               bytea,
	data_mime_type     text,
	received_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS %[3]s ON %[1]s (received_at);
CREATE TABLE IF NOT EXISTS %[2]s (
	submission_id uuid NOT NULL REFERENCES %[1]s (submission_id) ON DELETE CASCADE,
	attachment_id uuid NOT NULL,
	position      integer NOT NULL,
	filename      text NOT NULL,
	mime_type     text NOT NULL,
	content       bytea NOT NULL,
	PRIMARY KEY (submission_id, attachment_id)
);`, s.table, s.attachments, pgx.Identifier{cfg.Table + "_received_at"}.Sanitize())
		if _, err := tx.Exec(ctx, ddl); err != nil {
			return setupError(fmt.Errorf("create tables: %w", err))
		}
		// Tables made by hand must still have the columns the sink writes.
		check := fmt.Sprintf(`SELECT s.submission_id, s.case_id, s.destination_id, s.service_identifier, s.metadata,
	s.data, s.data_mime_type, s.received_at, a.attachment_id, a.position, a.filename, a.mime_type, a.content
FROM %s s JOIN %s a USING (submission_id) LIMIT 0`, s.table, s.attachments)
		rows, err := tx.Query(ctx, check)
		if err != nil {
			return setupError(fmt.Errorf("check tables: %w", err))
		}
		rows.Close()
		return setupError(rows.Err())
	})
}

// Kind returns "postgres".
func (s *Postgres) Kind() string { return "postgres" }

// Close closes the connection pool.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}

// Check asks whether both tables exist and take this user's inserts.
func (s *Postgres) Check(ctx context.Context) error {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'INSERT') AND has_table_privilege($2, 'INSERT')`,
		s.table, s.attachments).Scan(&ok)
	switch {
	case err != nil:
		return fmt.Errorf("postgres sink %s: %w", s.table, err)
	case !ok:
		return fmt.Errorf("postgres sink %s: no INSERT privilege on it or %s", s.table, s.attachments)
	}
	return nil
}

// Deliver inserts d unless its submission is there.
func (s *Postgres) Deliver(ctx context.Context, d Delivery) error {
	d, err := normalize(d)
	if err != nil {
		return fmt.Errorf("deliver to postgres: %w", err)
	}
	if err := s.deliver(ctx, d); err != nil {
		return fmt.Errorf("deliver %s to postgres %s: %w", d.SubmissionID, s.table, err)
	}
	return nil
}

func (s *Postgres) deliver(ctx context.Context, d Delivery) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return pgError(err)
	}
	defer func() {
		// A cancelled ctx must not keep the transaction open.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	var mime *string
	if d.Data != nil {
		mime = &d.DataMimeType
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s
	(submission_id, case_id, destination_id, service_identifier, metadata, data, data_mime_type)
	VALUES ($1, $2, $3, $4, $5, $6, $7)
	ON CONFLICT (submission_id) DO NOTHING`, s.table),
		d.SubmissionID, d.CaseID, d.DestinationID, d.ServiceIdentifier, json.RawMessage(d.Metadata), d.Data, mime)
	if err != nil {
		return pgError(fmt.Errorf("insert: %w", err))
	}
	if tag.RowsAffected() == 0 {
		return nil // delivered before
	}
	if len(d.Attachments) > 0 {
		rows := newCopyRows(ctx, d, s.maxAttachment)
		sql := fmt.Sprintf(`COPY %s (submission_id, attachment_id, position, filename, mime_type, content) FROM STDIN (FORMAT %s)`,
			s.attachments, rows.format())
		_, err := tx.Conn().PgConn().CopyFrom(ctx, rows, sql)
		if err := rows.failure(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return transient(ctx.Err())
		}
		if err != nil {
			return pgError(fmt.Errorf("copy attachments: %w", err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return pgError(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// copyRows reads the attachments of d as COPY rows, one chunk of an
// attachment at a time. When every attachment's size is known it writes
// COPY's binary format, the content as it is; otherwise the text format,
// the content in bytea's hex form, which costs the server far more.
type copyRows struct {
	ctx    context.Context
	d      Delivery
	names  []string
	max    int64
	binary bool

	started bool
	ended   bool
	i       int     // the attachment being read
	src     *source // its source, nil between attachments
	pending []byte  // bytes to hand out before reading on
	raw     []byte
	out     []byte

	// err is the source's failure. CopyFrom reads in a goroutine of its
	// own, which may still run when a cancelled CopyFrom has returned.
	mu  sync.Mutex
	err error
}

func (r *copyRows) fail(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *copyRows) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// binaryHeader starts COPY's binary format: signature, flags, no extension.
var binaryHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

func newCopyRows(ctx context.Context, d Delivery, max int64) *copyRows {
	r := &copyRows{ctx: ctx, d: d, names: Filenames(d.Attachments), max: max, binary: true}
	for _, a := range d.Attachments {
		if a.Size < 0 {
			r.binary = false
		}
	}
	return r
}

// format is the COPY option the rows need.
func (r *copyRows) format() string {
	if r.binary {
		return "binary"
	}
	return "text"
}

func (r *copyRows) Read(p []byte) (int, error) {
	for {
		if len(r.pending) > 0 {
			n := copy(p, r.pending)
			r.pending = r.pending[n:]
			return n, nil
		}
		if err := r.failure(); err != nil {
			return 0, err
		}
		if !r.started {
			r.started = true
			if r.binary {
				r.pending = binaryHeader
				continue
			}
		}
		if r.src == nil {
			if r.i == len(r.d.Attachments) {
				if r.binary && !r.ended {
					r.ended = true
					r.pending = []byte{0xff, 0xff} // the trailer: field count -1
					continue
				}
				return 0, io.EOF
			}
			if err := r.open(); err != nil {
				r.fail(err)
				return 0, err
			}
			continue
		}
		if r.raw == nil {
			r.raw = make([]byte, 32<<10)
		}
		n, err := r.src.Read(r.raw)
		if r.binary {
			r.pending = r.raw[:n]
		} else {
			r.out = hex.AppendEncode(r.out[:0], r.raw[:n])
			r.pending = r.out
		}
		a := r.d.Attachments[r.i]
		switch {
		case err == io.EOF && r.binary && r.src.n != a.Size,
			err == nil && r.binary && r.src.n > a.Size:
			r.src.Close()
			r.fail(fmt.Errorf("%w: %w: attachment %s has more or fewer than the %d bytes its size says", ErrPermanent, ErrInvalid, a.ID, a.Size))
			r.pending = nil
		case err == io.EOF:
			r.src.Close()
			r.src = nil
			r.i++
			if !r.binary {
				r.pending = append(r.pending, '\n')
			}
		case err != nil:
			r.src.Close()
			r.fail(r.src.failure())
		}
	}
}

// open opens the next attachment's source and puts the fields before its
// content in pending.
func (r *copyRows) open() error {
	a := r.d.Attachments[r.i]
	if r.max > 0 && a.Size > r.max {
		return fmt.Errorf("%w: %w: attachment %s has %d bytes, more than %d", ErrPermanent, ErrTooLarge, a.ID, a.Size, r.max)
	}
	src, err := openSource(r.ctx, a, r.max)
	if err != nil {
		return err
	}
	r.src = src
	if !r.binary {
		r.pending = []byte(strings.Join([]string{
			r.d.SubmissionID, a.ID, strconv.Itoa(r.i), copyText(r.names[r.i]), copyText(a.MimeType), `\\x`,
		}, "\t"))
		return nil
	}
	sub, att := uuid.MustParse(r.d.SubmissionID), uuid.MustParse(a.ID)
	b := binary.BigEndian.AppendUint16(r.out[:0], 6)
	b = binary.BigEndian.AppendUint32(b, 16)
	b = append(b, sub[:]...)
	b = binary.BigEndian.AppendUint32(b, 16)
	b = append(b, att[:]...)
	b = binary.BigEndian.AppendUint32(b, 4)
	b = binary.BigEndian.AppendUint32(b, uint32(r.i))
	for _, text := range []string{r.names[r.i], a.MimeType} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(text)))
		b = append(b, text...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(a.Size))
	r.out = b
	r.pending = b
	return nil
}

// copyText escapes s for a text field of COPY.
func copyText(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// setupError is pgError for opening the sink, where a table of another
// shape or a missing privilege is a configuration to correct before the
// subscriber starts.
func setupError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "42") {
		return permanent(err)
	}
	return pgError(err)
}

// pgError classifies a database error: what the server refuses of the
// delivery's values repeats; everything else (a lost connection, a
// conflict between transactions, a lack of resources, a missing table or
// privilege) may pass.
func pgError(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 {
		switch pe.Code[:2] {
		case "09", "21", "22", "23", "27", "38", "39", "44", "54", "P0":
			// The database refuses this delivery's values: a data
			// exception, a constraint or a view's check, a limit, a
			// trigger's or function's exception. Asking again repeats it.
			return permanent(err)
		}
	}
	// Unreachable, overloaded, or a table or privilege missing: an
	// operator mends it, and the submissions wait for that.
	return transient(err)
}
