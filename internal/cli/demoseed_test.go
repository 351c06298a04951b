package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

func noEnv(string) string { return "" }

func readDemoFile(t *testing.T, dir string) demoFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d demoFile
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDemoSeedsPostgresOnce seeds the demo into PostgreSQL as make cluster
// does, then again with other URLs: the destinations and clients stay, the
// URLs in demo.json follow.
func TestDemoSeedsPostgresOnce(t *testing.T) {
	dbURL := freshSchema(t)
	dir := t.TempDir()
	ctx := context.Background()
	run := func(publicURL, natsURL string) demoFile {
		t.Helper()
		var out, errOut bytes.Buffer
		err := Run(ctx, []string{"demo", "--database-url", dbURL, "--data-dir", dir, "--public-url", publicURL, "--nats-url", natsURL}, noEnv, &out, &errOut)
		if err != nil {
			t.Fatalf("demo: %v\n%s", err, errOut.String())
		}
		d := readDemoFile(t, dir)
		if strings.Contains(out.String()+errOut.String(), d.Clients[0].ClientSecret) {
			t.Errorf("demo printed a client secret:\n%s%s", out.String(), errOut.String())
		}
		return d
	}
	first := run("http://127.0.0.1:19080/", "nats://127.0.0.1:19001,nats://127.0.0.1:19002")
	if first.BaseURL != "http://127.0.0.1:19080" || first.TokenURL != "http://127.0.0.1:19080/token" || first.NATSURL != "nats://127.0.0.1:19001,nats://127.0.0.1:19002" {
		t.Errorf("URLs in demo.json: %q %q %q", first.BaseURL, first.TokenURL, first.NATSURL)
	}
	if len(first.Destinations) != len(demoPlaces) || len(first.Clients) != 3 {
		t.Fatalf("%d destinations, %d clients; want %d and 3", len(first.Destinations), len(first.Clients), len(demoPlaces))
	}
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, d := range first.Destinations {
		if _, err := st.Destination(ctx, d.DestinationID); err != nil {
			t.Errorf("destination %s: %v", d.Name, err)
		}
		if _, err := os.Stat(d.EncryptionKeyFile); err != nil {
			t.Errorf("destination %s's key: %v", d.Name, err)
		}
	}

	second := run("http://127.0.0.1:19180", "nats://127.0.0.1:19101")
	if second.BaseURL != "http://127.0.0.1:19180" || second.NATSURL != "nats://127.0.0.1:19101" {
		t.Errorf("second run's URLs: %q %q", second.BaseURL, second.NATSURL)
	}
	ids := func(d demoFile) []string {
		var out []string
		for _, x := range d.Destinations {
			out = append(out, x.DestinationID)
		}
		for _, c := range d.Clients {
			out = append(out, c.ClientID, c.ClientSecret)
		}
		return out
	}
	if !slices.Equal(ids(first), ids(second)) {
		t.Errorf("second run made new destinations or clients: %v, then %v", ids(first), ids(second))
	}
}

func TestDemoNeedsDatabaseAndPublicURL(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--public-url", "http://x"},
		{"demo", "--database-url", "postgres://127.0.0.1/x"},
	} {
		err := Run(context.Background(), args, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "demo needs --database-url and --public-url") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
