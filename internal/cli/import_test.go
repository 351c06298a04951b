package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/internal/sharedtest"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

// storeDir returns a data dir holding a new SQLite store, as dev leaves
// one: operator commands refuse a data dir without a store.
func storeDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, _, err := openStore(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	return dir
}

// runCLI runs the command with the store in dir and returns its output.
func runCLI(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "AMTSBOTE_DATA_DIR" {
			return dir
		}
		return ""
	}
	err := Run(context.Background(), args, getenv, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestImportCommands(t *testing.T) {
	gv21 := sharedtest.Data(t, "GV100AD_31122021.txt")
	gv25 := sharedtest.Data(t, "GV100AD_30112025.txt")
	dir := storeDir(t)

	steps := []struct {
		name string
		args []string
		want string // in the output
		fail bool
	}{
		{"2021 directory", []string{"import", "gv100ad", gv21}, "16048 areas, 16048 added", false},
		{"2025 directory", []string{"import", "gv100ad", gv25}, "32 added, 15572 updated, 0 restored, 92 retired", false},
		{"2025 again changes nothing", []string{"import", "gv100ad", gv25}, "15988 unchanged", false},
		{"an older directory is refused", []string{"import", "gv100ad", gv21}, "older than the current data", true},
		{"catalogue", []string{"import", "leika", sharedtest.Data(t, "leika.csv")}, "4813 services, 4813 added", false},
		{"without --nats-url it says so", []string{"import", "leika", sharedtest.Data(t, "leika.csv")}, "not announced (no --nats-url)", false},
		{"flags after the file", []string{"import", "leika", sharedtest.Data(t, "leika.csv"), "--actor", "erika"}, "4813 services", false},
		{"two files", []string{"import", "leika", sharedtest.Data(t, "leika.csv"), "--actor", "erika", sharedtest.Data(t, "leika.csv")}, "want exactly one FILE, got 2", true},
		{"postcodes", []string{"import", "plz", sharedtest.Data(t, "plz.csv")}, "12883 rows", false},
		{"coverage", []string{"coverage", "--leika", "99108008000000"}, "Germany  10953        0  0.0    83577140", false},
		{"coverage of a malformed key", []string{"coverage", "--leika", "9910800800000x"}, "non-digit", true},
		{"unknown import", []string{"import", "gv100"}, "unknown import", true},
		{"no file", []string{"import", "leika"}, "want exactly one FILE", true},
		{"missing file", []string{"import", "leika", filepath.Join(dir, "nope.csv")}, "no such file", true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, err := runCLI(t, dir, s.args...)
			if (err != nil) != s.fail {
				t.Fatalf("err %v, output %s", err, out)
			}
			msg := out
			if err != nil {
				msg += err.Error()
			}
			// Columns are aligned with spaces; compare words.
			if !strings.Contains(strings.Join(strings.Fields(msg), " "), strings.Join(strings.Fields(s.want), " ")) {
				t.Errorf("output %q, error %v: want %q", out, err, s.want)
			}
		})
	}

	// A truncated line aborts with its number and leaves the store as it was.
	raw, err := os.ReadFile(gv25)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(raw), "\n", 11)[:10]
	lines[6] = lines[6][:120]
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, dir, "import", "gv100ad", bad); err == nil || !strings.Contains(err.Error(), "line 7") {
		t.Fatalf("truncated line: %v %s", err, out)
	}
	if out, err := runCLI(t, dir, "import", "gv100ad", gv25); err != nil || !strings.Contains(out, "15988 unchanged") {
		t.Errorf("after the refused import: %v %s", err, out)
	}
}

// TestAuditActor: a registry change made with the CLI names its actor,
// --actor or $USER, in the audit log.
func TestAuditActor(t *testing.T) {
	dir := storeDir(t)
	if out, err := runCLI(t, dir, "client", "create", "--name", "Portal", "--scope", "send:region:DE08", "--actor", "erika"); err != nil {
		t.Fatalf("client create: %v\n%s", err, out)
	}
	st, _, err := openStore(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.AuditLog(context.Background(), "", store.Page{})
	if err != nil || len(entries) != 1 || entries[0].Actor != "erika" {
		t.Fatalf("audit log %+v, %v; want one entry by erika", entries, err)
	}
}

// TestClientChanges: a client is disabled, enabled and given a new secret
// from the CLI, each audited; an unknown client is named.
func TestClientChanges(t *testing.T) {
	dir := storeDir(t)
	out, err := runCLI(t, dir, "client", "create", "--name", "Portal", "--scope", "send:region:DE08")
	if err != nil {
		t.Fatalf("client create: %v\n%s", err, out)
	}
	var created struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, dir, "client", "disable", created.ClientID, "--actor", "erika"); err != nil || !strings.Contains(out, `"disabled":true`) {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	if out, err := runCLI(t, dir, "client", "list"); err != nil || !regexp.MustCompile(created.ClientID+`\s+\S.*\s+true\s`).MatchString(out) || strings.Contains(out, created.ClientSecret) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := runCLI(t, dir, "client", "enable", created.ClientID); err != nil || !strings.Contains(out, `"disabled":false`) {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	out, err = runCLI(t, dir, "client", "rotate-secret", created.ClientID)
	var rotated struct {
		ClientSecret string `json:"clientSecret"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rotated) != nil || len(rotated.ClientSecret) < 40 || rotated.ClientSecret == created.ClientSecret {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	st, _, err := openStore(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Client(context.Background(), created.ClientID)
	if err != nil || c.Disabled || bcrypt.CompareHashAndPassword(c.SecretHash, []byte(rotated.ClientSecret)) != nil {
		t.Fatalf("client %+v, %v: want enabled with the new secret", c, err)
	}
	entries, err := st.AuditLog(context.Background(), "client:"+created.ClientID, store.Page{})
	if err != nil || len(entries) != 4 || entries[2].Action != "client.disable" || entries[2].Actor != "erika" {
		t.Fatalf("audit log %+v, %v", entries, err)
	}
	if _, err := runCLI(t, dir, "client", "disable", "nobody"); err == nil || !strings.Contains(err.Error(), "client nobody does not exist") {
		t.Errorf("disable of an unknown client: %v", err)
	}
	if _, err := runCLI(t, dir, "client", "disable"); !errors.Is(err, ErrUsage) {
		t.Errorf("disable without an id: %v", err)
	}
}

// TestOperatorCommandsNeedAPostgresStore: a --database-url whose schema
// holds no Amtsbote store is refused and left empty; once a store is
// there, the command works.
func TestOperatorCommandsNeedAPostgresStore(t *testing.T) {
	url := flowtest.FreshSchema(t)
	ctx := context.Background()
	_, err := runCLI(t, t.TempDir(), "destination", "list", "--database-url", url)
	if err == nil || !strings.Contains(err.Error(), "holds no Amtsbote store") {
		t.Fatalf("destination list: %v, want the empty schema refused", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("the refused schema has %d tables (%v)", tables, err)
	}
	st, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if out, err := runCLI(t, t.TempDir(), "destination", "list", "--database-url", url); err != nil {
		t.Fatalf("destination list on a store: %v\n%s", err, out)
	}
}

// TestMaskURL: a database URL or connection string is printed without its
// password, wherever it stands.
func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://x:DBPASS@db:5432/x?sslmode=disable":    "postgres://x:****@db:5432/x?sslmode=disable",
		"postgres://x@db/x?password=QPASS&sslmode=disable": "postgres://x@db/x?password=****&sslmode=disable",
		"postgres://x:DBPASS@db/x?Password=QPASS":          "postgres://x:****@db/x?Password=****",
		"host=db password=KVPASS dbname=x":                 "host=db password=**** dbname=x",
		"host=db password = 'K V\\'PASS' dbname=x":         "host=db password = **** dbname=x",
		"http://collector:4318":                            "http://collector:4318",
	} {
		got := maskURL(in)
		if got != want {
			t.Errorf("maskURL(%q) = %q, want %q", in, got, want)
		}
		for _, secret := range []string{"DBPASS", "QPASS", "KVPASS", "PASS'"} {
			if strings.Contains(got, secret) {
				t.Errorf("maskURL(%q) = %q shows %s", in, got, secret)
			}
		}
	}
	st, _, err := openStore(t.Context(), "host=db password=KVPASS dbname=x", t.TempDir())
	if err == nil {
		st.Close()
		t.Fatal("a key=value connection string opened a store")
	}
	if strings.Contains(err.Error(), "KVPASS") {
		t.Errorf("the error shows the password: %v", err)
	}
}
