package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
)

// TestQuickStartSubscriber runs the README's quick start as written: dev
// in one process, `subscriber --config <data>/subscriber.yaml` in another.
// Every demo submission lands decrypted in <data>/sink and is accepted.
func TestQuickStartSubscriber(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs dev and the subscriber")
	}
	dir := t.TempDir()
	bin := buildBinary(t)
	dataDir := filepath.Join(dir, "data")
	dev := startChild(t, bin, dataDir)
	d := dev.demo
	sub := startProcess(t, bin, "metrics and health on", "subscriber", "--config", filepath.Join(dataDir, "subscriber.yaml"), "--log-level", "warn", "--listen", "127.0.0.1:0")
	defer sub.stop(t)

	ctx := context.Background()
	sender := newActor(t, d, "sender", http.DefaultTransport)
	var receipts []client.Receipt
	for i, dest := range d.Destinations {
		r, err := sender.Sender().Submit(ctx, client.Submission{
			DestinationID: dest.DestinationID,
			ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Demo"},
			Data:          []byte(fmt.Sprintf(`{"demo":%d}`, i)),
			Attachments:   []client.Attachment{{Filename: "antrag.pdf", MimeType: "application/pdf", Bytes: []byte("%PDF-1.7 demo")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	for i, r := range receipts {
		eventually(t, time.Minute, func() error {
			st, err := sender.Sender().StatusOf(ctx, r)
			if err != nil {
				return err
			}
			if st.Decision != client.StateAccepted {
				return fmt.Errorf("%s: %q, not accepted", r.SubmissionID, st.Decision)
			}
			return nil
		})
		folder := filepath.Join(dataDir, "sink", r.SubmissionID)
		data, err := os.ReadFile(filepath.Join(folder, "data.json"))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"demo":%d}`, i); string(data) != want {
			t.Errorf("%s: data %s, want %s", r.SubmissionID, data, want)
		}
		if _, err := os.Stat(filepath.Join(folder, "attachments", "antrag.pdf")); err != nil {
			t.Error(err)
		}
	}
	// The subscriber's own metrics and readiness.
	_, addr, _ := strings.Cut(sub.out.String(), "metrics and health on http://")
	addr, _, _ = strings.Cut(addr, "\n")
	ready := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := ready(); code != http.StatusOK || !strings.Contains(body, `"sink":"ok"`) {
		t.Errorf("subscriber /readyz: %d %s, want ready with its sink", code, body)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`amtsbote_sink_deliveries_total{kind="directory",outcome="delivered"} %d`, len(receipts))
	if !strings.Contains(string(body), want) {
		t.Errorf("subscriber /metrics lacks %s", want)
	}
	if strings.Contains(sub.errOut.String(), `"level":"ERROR"`) {
		t.Errorf("the subscriber logged errors:\n%s", sub.errOut.String())
	}
	// A sink folder gone is no longer ready.
	if err := os.RemoveAll(filepath.Join(dataDir, "sink")); err != nil {
		t.Fatal(err)
	}
	if code, body := ready(); code != http.StatusServiceUnavailable || !strings.Contains(body, "sink") {
		t.Errorf("subscriber /readyz without its sink folder: %d %s, want 503 naming the sink", code, body)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "nats.json")); errors.Is(err, os.ErrNotExist) {
		t.Error("dev kept no NATS users")
	}
}

// TestSubscriberStartErrors: a configuration naming a missing key file,
// or a signing key where an encryption key belongs, stops the subscriber
// at start with the file, line and field.
func TestSubscriberStartErrors(t *testing.T) {
	dir := t.TempDir()
	// A signing key made for the configuration's tests.
	raw, err := os.ReadFile(filepath.Join("..", "..", "services", "subscriber", "config", "testdata", "keys", "sig.private.jwk.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sig.jwk.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	const head = "mode: http\nhttp:\n  baseUrl: http://127.0.0.1:1\n  clientId: c\n  clientSecret: s\ndestinations:\n  - id: 2f0b0e1c-8d0a-4b9e-9c77-5f1b3d1e2a01\n"
	const tail = "sink:\n  kind: directory\n  directory: sink\n"
	cases := []struct {
		name, keys, want string
	}{
		{"missing key file", "    encryptionKeys: [keys/enc.jwk.json]\n    signingKey: sig.jwk.json\n",
			"subscriber.yaml:8: destinations[0].encryptionKeys[0]: file keys/enc.jwk.json: no such file"},
		{"signing key for encryption", "    encryptionKeys: [sig.jwk.json]\n    signingKey: sig.jwk.json\n",
			"subscriber.yaml:8: destinations[0].encryptionKeys[0]: file sig.jwk.json holds a signing (PS512) key, want an encryption (RSA-OAEP-256) key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, "subscriber.yaml")
			if err := os.WriteFile(file, []byte(head+c.keys+tail), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr strings.Builder
			err := Run(context.Background(), []string{"subscriber", "--config", file}, func(string) string { return "" }, &stdout, &stderr)
			if err == nil {
				t.Fatal("started")
			}
			if want := filepath.Join(dir, c.want); !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr %q, want %q", stderr.String(), want)
			}
			if _, err := os.Stat(filepath.Join(dir, "sink")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the sink was opened: %v", err)
			}
		})
	}
}

// TestInClear names the URLs that would carry the client secret over
// plain http to another host.
func TestInClear(t *testing.T) {
	for _, tc := range []struct {
		base, token string
		want        int
	}{
		{"http://localhost:8080", "", 0},
		{"http://127.0.0.1:8080", "", 0},
		{"http://[::1]:8080", "", 0},
		{"https://amtsbote.example.org", "", 0},
		{"http://amtsbote.example.org", "", 1},
		{"https://amtsbote.example.org", "http://idp.example.org/token", 1},
	} {
		conf := &config.Config{HTTP: config.HTTP{BaseURL: tc.base, TokenURL: tc.token}}
		if got := inClear(conf); len(got) != tc.want {
			t.Errorf("inClear(%s, %s) = %v, want %d", tc.base, tc.token, got, tc.want)
		}
	}
}
