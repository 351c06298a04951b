package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/client"
)

// TestNoSecretLeaks runs a lifecycle on a real dev process logging at
// debug level, with a callback secret, failed and successful token
// requests and refused calls, and then looks for every secret it knows
// (client secrets, access tokens, the callback secret, the private parts
// of Amtsbote's and the destinations' keys) in the logs, the metrics and
// the API's answers. Only the start banner may name the demo clients'
// secrets: printing them is its purpose.
func TestNoSecretLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	dev := startChild(t, bin, dir, "--log-level", "debug")
	d := dev.demo
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	banner := dev.out.String()

	secrets := map[string]string{}
	for _, c := range d.Clients {
		secrets["client secret of "+c.Role] = c.ClientSecret
	}
	for _, path := range privateKeyFiles(t, dir) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var jwk map[string]any
		if err := json.Unmarshal(raw, &jwk); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if v, ok := jwk[m].(string); ok {
				secrets["private member "+m+" of "+filepath.Base(path)] = v
			}
		}
	}
	callbackSecret := "callback-" + strings.Repeat("geheim", 8)
	secrets["callback secret"] = callbackSecret

	var answers strings.Builder
	record := func(resp *http.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for k, v := range resp.Header {
			answers.WriteString(k + ": " + strings.Join(v, ", ") + "\n")
		}
		answers.Write(b)
		answers.WriteString("\n")
	}
	tokens := map[string]string{}
	for _, c := range d.Clients {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}}
		form.Set("client_secret", c.ClientSecret+"x")
		record(http.PostForm(d.TokenURL, form))
		form.Set("client_secret", c.ClientSecret)
		resp, err := http.PostForm(d.TokenURL, form)
		if err != nil {
			t.Fatal(err)
		}
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("token for %s: %v", c.Role, err)
		}
		resp.Body.Close()
		tokens[c.Role] = tr.AccessToken
		secrets["access token of "+c.Role] = tr.AccessToken
	}

	// A lifecycle with a callback secret, and calls that are refused.
	dest := d.Destinations[0]
	ring, sigKey := destinationKeys(t, dest)
	sender := newActor(t, d, "sender", http.DefaultTransport)
	receiver := newActor(t, d, "receiver", http.DefaultTransport).Receiver()
	receipt, err := sender.Sender().Submit(ctx, client.Submission{
		DestinationID: dest.DestinationID,
		ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Gewerbeanmeldung"},
		Region:        dest.Region,
		Data:          []byte(`{"gewerbe":{"art":"Anmeldung"}}`),
		Callback:      &client.Callback{URL: "https://portal.example/callback", Secret: callbackSecret},
	})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitListed(t, receiver, dest.DestinationID, receipt.SubmissionID)
	rec := fetch(t, receiver, receipt.SubmissionID, ring)
	defer rec.Close()
	if err := receiver.Accept(ctx, rec, sigKey); err != nil {
		t.Fatalf("accept: %v", err)
	}
	call := func(method, path, token string) {
		req, err := http.NewRequest(method, d.BaseURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		record(http.DefaultClient.Do(req))
	}
	call(http.MethodGet, "/v1/submissions/"+receipt.SubmissionID, tokens["sender"])
	call(http.MethodGet, "/v1/submissions/"+receipt.SubmissionID, tokens["receiver"]+"x")
	call(http.MethodGet, "/v1/submissions?destinationId="+dest.DestinationID, tokens["receiver"])
	call(http.MethodGet, "/v1/destinations/"+dest.DestinationID, tokens["receiver"])
	call(http.MethodGet, "/v1/cases/"+receipt.CaseID+"/events", tokens["sender"])
	call(http.MethodGet, "/admin/v1/clients", tokens["sender"])
	call(http.MethodGet, "/metrics", "")
	time.Sleep(200 * time.Millisecond) // the last log lines of the calls

	places := map[string]string{
		"the log":         dev.errOut.String(),
		"standard output": strings.TrimPrefix(dev.out.String(), banner),
		"the API answers": answers.String(),
	}
	for where, text := range places {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %s", what, where)
			}
		}
	}
	for what, secret := range secrets {
		if strings.HasPrefix(what, "client secret") {
			continue
		}
		if strings.Contains(banner, secret) {
			t.Errorf("%s appears in the start banner", what)
		}
	}
	// The search finds what is there: the banner prints the secrets.
	if !strings.Contains(banner, d.Clients[0].ClientSecret) {
		t.Error("the start banner does not print the demo client's secret; the search proves nothing")
	}
	if !strings.Contains(dev.errOut.String(), `"level":"`) {
		t.Errorf("no log lines to look at:\n%s", dev.errOut.String())
	}
}

// privateKeyFiles lists the private JWK files under dir.
func privateKeyFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasSuffix(path, ".jwk.json") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no private key files under %s", dir)
	}
	return out
}
