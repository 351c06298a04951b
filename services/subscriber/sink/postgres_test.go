package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
	"github.com/amtsbote/amtsbote/services/subscriber/sink/sinktest"
)

func openPostgres(t *testing.T, cfg sink.PostgresConfig) *sink.Postgres {
	t.Helper()
	s, err := sink.OpenPostgres(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open postgres sink: %v", err)
	}
	return s
}

// readPostgres reads what the sink's tables hold.
func readPostgres(t *testing.T, url, schema, table string) []sinktest.Delivered {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	main := pgx.Identifier{schema, table}.Sanitize()
	atts := pgx.Identifier{schema, table + "_attachments"}.Sanitize()
	rows, err := conn.Query(ctx, `SELECT submission_id::text, case_id::text, destination_id::text, service_identifier,
		metadata::text, data, coalesce(data_mime_type, '') FROM `+main)
	if err != nil {
		t.Fatalf("read submissions: %v", err)
	}
	var out []sinktest.Delivered
	for rows.Next() {
		var d sinktest.Delivered
		var meta string
		if err := rows.Scan(&d.SubmissionID, &d.CaseID, &d.DestinationID, &d.ServiceIdentifier, &meta, &d.Data, &d.DataMimeType); err != nil {
			t.Fatalf("read submissions: %v", err)
		}
		d.Metadata = []byte(meta)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read submissions: %v", err)
	}
	for i := range out {
		rows, err := conn.Query(ctx, `SELECT attachment_id::text, filename, mime_type, content FROM `+atts+`
			WHERE submission_id = $1 ORDER BY position`, out[i].SubmissionID)
		if err != nil {
			t.Fatalf("read attachments: %v", err)
		}
		for rows.Next() {
			var a sinktest.Attachment
			if err := rows.Scan(&a.ID, &a.Filename, &a.MimeType, &a.Content); err != nil {
				t.Fatalf("read attachments: %v", err)
			}
			out[i].Attachments = append(out[i].Attachments, a)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("read attachments: %v", err)
		}
	}
	var orphans int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+atts+` a WHERE NOT EXISTS (SELECT 1 FROM `+main+` s WHERE s.submission_id = a.submission_id)`).Scan(&orphans); err != nil || orphans != 0 {
		t.Fatalf("%d attachments without a submission (%v)", orphans, err)
	}
	return out
}

func currentSchema(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatalf("current schema: %v", err)
	}
	return schema
}

func TestPostgresConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Backend {
		url := flowtest.FreshSchema(t)
		schema := currentSchema(t, url)
		return sinktest.Backend{
			Open: func(t *testing.T) sink.Sink {
				return openPostgres(t, sink.PostgresConfig{URL: url})
			},
			Delivered: func(t *testing.T) []sinktest.Delivered {
				return readPostgres(t, url, schema, sink.DefaultPostgresTable)
			},
		}
	})
}

// TestPostgresNamedTable runs the suite on a table of its own name in a
// schema named explicitly, beside another sink's table.
func TestPostgresNamedTable(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Backend {
		url := flowtest.FreshSchema(t)
		schema := currentSchema(t, url)
		// The default table of another sink must stay apart.
		openPostgres(t, sink.PostgresConfig{URL: url}).Close()
		return sinktest.Backend{
			Open: func(t *testing.T) sink.Sink {
				return openPostgres(t, sink.PostgresConfig{URL: url, Schema: schema, Table: "eingang_bauamt"})
			},
			Delivered: func(t *testing.T) []sinktest.Delivered {
				if got := readPostgres(t, url, schema, sink.DefaultPostgresTable); len(got) != 0 {
					t.Fatalf("the other table holds %d submissions", len(got))
				}
				return readPostgres(t, url, schema, "eingang_bauamt")
			},
		}
	})
}

func TestPostgresMaxAttachment(t *testing.T) {
	url := flowtest.FreshSchema(t)
	s := openPostgres(t, sink.PostgresConfig{URL: url, MaxAttachment: 1000})
	defer s.Close()
	d := sinktest.NewDelivery()
	d.Attachments = []sink.Attachment{(&sinktest.Content{Bytes: sinktest.Random(9, 1001)}).Attachment(uuid.NewString(), "x.bin", "application/octet-stream")}
	err := s.Deliver(context.Background(), d)
	if !errors.Is(err, sink.ErrTooLarge) || !errors.Is(err, sink.ErrPermanent) {
		t.Fatalf("deliver: %v, want a permanent ErrTooLarge", err)
	}
	if got := readPostgres(t, url, currentSchema(t, url), sink.DefaultPostgresTable); len(got) != 0 {
		t.Fatalf("a refused delivery left %d submissions", len(got))
	}
}

// TestPostgresValueRefused shows that a value the database refuses is a
// permanent error: jsonb holds no NUL character.
func TestPostgresValueRefused(t *testing.T) {
	url := flowtest.FreshSchema(t)
	s := openPostgres(t, sink.PostgresConfig{URL: url})
	defer s.Close()
	d := sinktest.NewDelivery()
	d.Metadata = []byte(`{"name":"a\u0000b"}`)
	if err := s.Deliver(context.Background(), d); !errors.Is(err, sink.ErrPermanent) {
		t.Fatalf("deliver: %v, want a permanent error", err)
	}
}

// postgresBeside opens a sink on a fresh schema and a connection of its
// own to the same schema, to change the tables under the sink.
func postgresBeside(t *testing.T) (*sink.Postgres, *pgx.Conn) {
	t.Helper()
	url := flowtest.FreshSchema(t)
	s := openPostgres(t, sink.PostgresConfig{URL: url})
	t.Cleanup(func() { s.Close() })
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return s, conn
}

// TestPostgresTriggerRefuses shows that a Fachverfahren's trigger refusing
// a submission is a permanent error, whichever SQLSTATE it raises: a
// PL/pgSQL exception's own, or 38000 as PL/Python and PL/Perl raise it.
func TestPostgresTriggerRefuses(t *testing.T) {
	for _, code := range []string{"P0001", "38000", "23514"} {
		t.Run(code, func(t *testing.T) {
			s, conn := postgresBeside(t)
			ctx := context.Background()
			if _, err := conn.Exec(ctx, fmt.Sprintf(`
CREATE FUNCTION pruefen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'Antrag unvollständig' USING ERRCODE = '%s'; END $$;
CREATE TRIGGER pruefen BEFORE INSERT ON submissions FOR EACH ROW EXECUTE FUNCTION pruefen();`, code)); err != nil {
				t.Fatal(err)
			}
			err := s.Deliver(ctx, sinktest.NewDelivery())
			if !errors.Is(err, sink.ErrPermanent) || errors.Is(err, sink.ErrTransient) || !strings.Contains(err.Error(), "Antrag unvollständig") {
				t.Fatalf("deliver: %v, want the trigger's permanent refusal", err)
			}
		})
	}
}

// TestPostgresTableMissing shows that a table an operator moved away
// (a migration, a restore) makes submissions wait, not refused for good:
// once it is back they are delivered.
func TestPostgresTableMissing(t *testing.T) {
	s, conn := postgresBeside(t)
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE submissions RENAME TO submissions_moved`); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err == nil {
		t.Fatal("check passed without the table")
	}
	d := sinktest.NewDelivery()
	if err := s.Deliver(ctx, d); !errors.Is(err, sink.ErrTransient) || errors.Is(err, sink.ErrPermanent) {
		t.Fatalf("deliver without its table: %v, want a transient error", err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE submissions_moved RENAME TO submissions`); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check with the table back: %v", err)
	}
	if err := s.Deliver(ctx, d); err != nil {
		t.Fatalf("deliver with the table back: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM submissions`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d submissions stored (%v), want 1", n, err)
	}
}

func TestOpenPostgres(t *testing.T) {
	url := flowtest.FreshSchema(t)
	cases := []struct {
		name string
		cfg  sink.PostgresConfig
		want string
	}{
		{"no url", sink.PostgresConfig{}, "no database url"},
		{"bad url", sink.PostgresConfig{URL: "postgres://[::1"}, "postgres sink"},
		{"quoted schema", sink.PostgresConfig{URL: url, Schema: `a"; DROP TABLE x; --`}, "schema"},
		{"upper-case table", sink.PostgresConfig{URL: url, Table: "Eingang"}, "table"},
		{"long table", sink.PostgresConfig{URL: url, Table: strings.Repeat("t", 52)}, "table"},
		{"missing schema", sink.PostgresConfig{URL: url, Schema: "no_such_schema"}, `schema "no_such_schema" does not exist`},
		{"huge attachments", sink.PostgresConfig{URL: url, MaxAttachment: sink.MaxPostgresAttachment + 1}, "max attachment"},
		{"negative attachments", sink.PostgresConfig{URL: url, MaxAttachment: -1}, "max attachment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sink.OpenPostgres(context.Background(), tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open: %v, want a permanent error naming %q", err, tc.want)
			}
		})
	}

	t.Run("table of another shape", func(t *testing.T) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `CREATE TABLE fremd (submission_id uuid PRIMARY KEY, payload text)`); err != nil {
			t.Fatal(err)
		}
		s, err := sink.OpenPostgres(ctx, sink.PostgresConfig{URL: url, Table: "fremd"})
		if err == nil {
			s.Close()
			t.Fatal("opened a table without the sink's columns")
		}
		if !errors.Is(err, sink.ErrPermanent) {
			t.Fatalf("open: %v, want a permanent error", err)
		}
	})
}

// TestPostgresPoolSize shows that the pool holds a connection for each
// delivery the subscriber may have in hand, unless the URL sets its size.
func TestPostgresPoolSize(t *testing.T) {
	url := flowtest.FreshSchema(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	def, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url   string
		conns int32
		want  int32
	}{
		{url, 12, 12},
		{url, 0, def.MaxConns},
		{url + sep + "pool_max_conns=3", 12, 3},
	} {
		s, err := sink.OpenPostgres(context.Background(), sink.PostgresConfig{URL: tc.url, Conns: tc.conns})
		if err != nil {
			t.Fatal(err)
		}
		if got := sink.PoolSize(s); got != tc.want {
			t.Errorf("%s with %d conns: pool of %d, want %d", tc.url, tc.conns, got, tc.want)
		}
		s.Close()
	}
}

// TestPostgresSizeMismatch shows that content longer or shorter than its
// announced size fails the delivery and leaves nothing.
func TestPostgresSizeMismatch(t *testing.T) {
	url := flowtest.FreshSchema(t)
	s := openPostgres(t, sink.PostgresConfig{URL: url})
	defer s.Close()
	for _, size := range []int64{999, 1001, 0} {
		d := sinktest.NewDelivery()
		a := (&sinktest.Content{Bytes: sinktest.Random(8, 1000)}).Attachment(uuid.NewString(), "x.bin", "application/octet-stream")
		a.Size = size
		d.Attachments = []sink.Attachment{a}
		if err := s.Deliver(context.Background(), d); !errors.Is(err, sink.ErrInvalid) || !errors.Is(err, sink.ErrPermanent) {
			t.Fatalf("deliver 1000 bytes announced as %d: %v, want a permanent ErrInvalid", size, err)
		}
	}
	if got := readPostgres(t, url, currentSchema(t, url), sink.DefaultPostgresTable); len(got) != 0 {
		t.Fatalf("failed deliveries left %d submissions", len(got))
	}
}
