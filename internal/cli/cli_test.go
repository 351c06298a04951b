package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
)

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// devProcess is `amtsbote dev` running in the test through run().
type devProcess struct {
	cancel context.CancelFunc
	done   chan error
	out    *flowtest.Buffer
	demo   demoFile
}

func startDev(t *testing.T, dataDir string, extra ...string) *devProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &devProcess{cancel: cancel, done: make(chan error, 1), out: &flowtest.Buffer{}}
	args := append([]string{"dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--nats-port", "-1", "--log-level", "warn"}, extra...)
	go func() { p.done <- Run(ctx, args, func(string) string { return "" }, p.out, io.Discard) }()
	t.Cleanup(func() { p.stop(t) })
	eventually(t, 2*time.Minute, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("dev exited: %v", err)
		default:
		}
		if !strings.Contains(p.out.String(), "Try:") {
			return fmt.Errorf("no credentials printed yet")
		}
		return nil
	})
	raw, err := os.ReadFile(filepath.Join(dataDir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &p.demo); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *devProcess) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("dev stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("dev did not stop within 30s")
	}
}

func token(t *testing.T, d demoFile, role string) string {
	t.Helper()
	for _, c := range d.Clients {
		if c.Role != role {
			continue
		}
		resp, err := http.PostForm(d.TokenURL, url.Values{
			"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {c.ClientSecret},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.AccessToken == "" {
			t.Fatalf("token for %s: status %d, err %v", role, resp.StatusCode, err)
		}
		return tok.AccessToken
	}
	t.Fatalf("no %s client in demo.json", role)
	return ""
}

func get(t *testing.T, url, bearer string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestDevQuickStart does what the README's quick start says: start dev, take
// the printed credentials, get a token, read a demo destination and its key;
// then restart and find everything kept.
func TestDevQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	dir := t.TempDir()
	p := startDev(t, dir)
	d := p.demo
	if len(d.Destinations) != 3 || len(d.Clients) != 3 {
		t.Fatalf("demo has %d destinations and %d clients, want 3 and 3", len(d.Destinations), len(d.Clients))
	}
	for _, c := range d.Clients {
		if !strings.Contains(p.out.String(), c.ClientSecret) {
			t.Errorf("the %s client's secret is not printed", c.Role)
		}
	}
	levels := map[string]bool{}
	for _, dest := range d.Destinations {
		levels[dest.Level] = true
		for _, f := range []string{dest.EncryptionKeyFile, dest.SigningKeyFile} {
			if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("private key file %s: %v (mode %v)", f, err, st.Mode().Perm())
			}
		}
	}
	for _, l := range []string{"gemeinde", "kreis", "land"} {
		if !levels[l] {
			t.Errorf("no demo destination at level %s", l)
		}
	}

	tok := token(t, d, "sender")
	dest := d.Destinations[0]
	code, body := get(t, d.BaseURL+"/v1/destinations/"+dest.DestinationID, tok)
	if code != http.StatusOK || !strings.Contains(string(body), dest.EncryptionKID) {
		t.Fatalf("GET destination = %d %s", code, body)
	}
	code, body = get(t, d.BaseURL+"/v1/destinations/"+dest.DestinationID+"/keys/"+dest.EncryptionKID, "")
	if code != http.StatusOK || !strings.Contains(string(body), `"wrapKey"`) {
		t.Fatalf("GET key = %d %s", code, body)
	}

	// The Routing API answers for the demo places: Kirchzarten's own
	// destination for Gewerbe, the Land's for the rest of the Kreis.
	for _, tc := range []struct{ ars, want string }{
		{"083155003064", d.Destinations[0].DestinationID},
		{"08315", d.Destinations[2].DestinationID},
	} {
		code, body := get(t, d.BaseURL+"/v2/routes?leikaKey=99050012000000&ars="+tc.ars, "")
		var res struct {
			Routes []struct {
				DestinationID string `json:"destinationId"`
			} `json:"routes"`
		}
		if err := json.Unmarshal(body, &res); err != nil || code != http.StatusOK || len(res.Routes) != 1 || res.Routes[0].DestinationID != tc.want {
			t.Errorf("GET /v2/routes for ARS %s = %d %s, want destination %s", tc.ars, code, body, tc.want)
		}
	}
	p.stop(t)

	again := startDev(t, dir)
	if again.demo.Clients[0].ClientSecret != d.Clients[0].ClientSecret || again.demo.Destinations[0].DestinationID != dest.DestinationID {
		t.Fatal("restart created new demo data instead of keeping it")
	}
	tok = token(t, again.demo, "receiver")
	code, body = get(t, again.demo.BaseURL+"/v1/destinations/"+dest.DestinationID, tok)
	if code != http.StatusOK || !strings.Contains(string(body), "contactInformation") {
		t.Fatalf("receiver GET destination after restart = %d %s", code, body)
	}
	// The demo's manager manages the destinations: a key roll's PATCH.
	tok = token(t, again.demo, "manager")
	req, err := http.NewRequest(http.MethodPatch, again.demo.BaseURL+"/v1/destinations/"+dest.DestinationID,
		strings.NewReader(`{"encryptionKid":"`+dest.EncryptionKID+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manager PATCH of a demo destination = %d, want 200", resp.StatusCode)
	}
}

func TestDevRefusesStandardNATSPort(t *testing.T) {
	err := Run(context.Background(), []string{"dev", "--nats-port", "4222"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "4222") {
		t.Fatalf("dev --nats-port 4222 = %v, want a refusal naming the port", err)
	}
}

func TestUnknownCommand(t *testing.T) {
	var stderr bytes.Buffer
	if err := Run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, io.Discard, &stderr); err == nil {
		t.Fatal("unknown command accepted")
	}
	if !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Fatalf("stderr = %q", stderr.String())
	}
}

// TestHelp answers -h of every command and subcommand with its usage and
// no failure, as `amtsbote <command> -h` promises.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"dev", "-h"}, {"serve", "-h"}, {"subscriber", "-h"}, {"demo", "-h"}, {"coverage", "-h"},
		{"destination", "-h"}, {"destination", "create", "-h"}, {"destination", "list", "--help"},
		{"client", "-h"}, {"client", "create", "-h"}, {"keys", "-h"}, {"keys", "generate", "-h"},
		{"import", "-h"}, {"import", "leika", "-h"}, {"dead", "-h"}, {"dead", "list", "-h"},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
		if err != nil && !errors.Is(err, ErrHelp) {
			t.Errorf("%v: %v", args, err)
		}
		if !strings.Contains(strings.ToLower(out.String()+errOut.String()), "usage") {
			t.Errorf("%v: no usage in %q", args, out.String()+errOut.String())
		}
	}
}

// TestStrayArguments refuses a value given without its flag instead of
// dropping it.
func TestStrayArguments(t *testing.T) {
	dir := t.TempDir()
	var errOut bytes.Buffer
	err := Run(context.Background(), []string{"client", "create", "--data-dir", dir, "--name", "Portal", "--scope", "send:region:DE08", "send:region:DE09"},
		func(string) string { return "" }, io.Discard, &errOut)
	if !errors.Is(err, ErrUsage) || !strings.Contains(errOut.String(), `unexpected argument "send:region:DE09"`) {
		t.Fatalf("err %v, stderr %q", err, errOut.String())
	}
}

// TestLogLines shows what every process's log lines carry: durations in
// seconds, and the trace id of the context they are logged with.
func TestLogLines(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	ctx := bus.ContextWithTraceparent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	log.InfoContext(ctx, "retrying", "retry_in", 1500*time.Millisecond)
	var line struct {
		RetryIn float64 `json:"retry_in"`
		TraceID string  `json:"trace_id"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line.RetryIn != 1.5 || line.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("logged %s, want retry_in 1.5 and the trace id", buf.String())
	}
}
