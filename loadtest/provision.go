package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// provisionService is the service every provisioned destination offers:
// one that no demo destination offers, so that each Gemeinde's route is
// its own destination's alone. Dev has no catalogue, so any key routes
// once a destination serves it.
const provisionService = "urn:de:fim:leika:leistung:99115003000000" // amtliche Meldebestätigung

// provisionWorkers is how many admin requests are under way at once.
const provisionWorkers = 8

// defaultGV100AD is the Gemeinden directory the project's reference data
// keeps beside the module.
func defaultGV100AD(ctx context.Context) string {
	return filepath.Join(moduleRoot(ctx), "..", "shared", "data", "GV100AD_30112025.txt")
}

// provisioned is what provisioning added to dev: the destinations, each
// with its Kreis's back office, and a sender that may send anywhere.
type provisioned struct {
	dests     []*destination
	senderID  string
	senderKey string
}

// admin speaks dev's operator API with an amtsbote:admin token.
type admin struct {
	base string
	hc   *http.Client
	tok  *client.ClientCredentials
}

// do sends body of ctype and decodes the answer into out.
func (a *admin) do(ctx context.Context, method, path string, body []byte, ctype string, want int, out any) error {
	if err := callAPI(ctx, a.hc, a.base, a.tok, method, path, bytes.NewReader(body), int64(len(body)), ctype, want, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// createClient creates an OAuth client through the operator API.
func (a *admin) createClient(ctx context.Context, name string, scopes []string) (*client.ClientCredentials, error) {
	body, err := json.Marshal(registry.ClientInput{Name: name, Scopes: scopes})
	if err != nil {
		return nil, err
	}
	var c struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	if err := a.do(ctx, http.MethodPost, "/admin/v1/clients", body, "application/json", http.StatusCreated, &c); err != nil {
		return nil, fmt.Errorf("create client %s: %w", name, err)
	}
	return &client.ClientCredentials{TokenURL: a.base + "/token", ClientID: c.ClientID, ClientSecret: c.ClientSecret, HTTPClient: a.hc}, nil
}

// adminClient creates a client with scope amtsbote:admin by running the
// dev binary's operator command on dev's store while dev runs: SQLite in
// WAL mode takes a second writer, PostgreSQL anyway.
func adminClient(ctx context.Context, bin, dataDir, databaseURL string) (id, secret string, err error) {
	args := []string{"client", "create", "--data-dir", dataDir, "--name", "loadtest admin", "--scope", "amtsbote:admin"}
	if databaseURL != "" {
		args = append(args, "--database-url", databaseURL)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AMTSBOTE_") && !strings.HasPrefix(kv, "LOADTEST_PROFILE_DIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("amtsbote client create: %w\n%s", err, stderr.String())
	}
	var c struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	if err := json.Unmarshal(out, &c); err != nil || c.ClientID == "" || c.ClientSecret == "" {
		return "", "", fmt.Errorf("amtsbote client create printed %q, not a client id and secret", out)
	}
	return c.ClientID, c.ClientSecret, nil
}

// topGemeinden returns the n most populous Gemeinden of dir.
func topGemeinden(dir *ars.Directory, n int) ([]ars.Area, error) {
	gs := dir.Areas(ars.Gemeinde)
	slices.SortFunc(gs, func(a, b ars.Area) int {
		return cmp.Or(cmp.Compare(b.Population, a.Population), strings.Compare(a.ARS, b.ARS))
	})
	for len(gs) > 0 && gs[len(gs)-1].Population <= 0 {
		gs = gs[:len(gs)-1]
	}
	if len(gs) < n {
		return nil, fmt.Errorf("the GV100AD directory has %d inhabited Gemeinden; %d destinations asked for", len(gs), n)
	}
	return gs[:n], nil
}

// withKID is kp under another kid: the registry wants each key's kid
// unique, and RSA-4096 generation costs seconds a key, so every
// provisioned destination shares one key pair of each purpose.
func withKID(kp jose.KeyPair, kid string) jose.KeyPair {
	kp.Public.KeyID = kid
	return kp
}

// setupClient is the HTTP client of provisioning: keep-alive for its
// workers, and not timed, as provisioning is not the load.
func setupClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * provisionWorkers
	return &http.Client{Transport: tr}
}

// devAdmin returns dev's operator API with a fresh admin client, which
// speaks through setup.
func devAdmin(ctx context.Context, t *target, databaseURL string, setup *http.Client) (*admin, error) {
	id, secret, err := adminClient(ctx, t.bin, t.dataDir, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("admin credential: %w", err)
	}
	return &admin{base: t.baseURL, hc: setup, tok: &client.ClientCredentials{TokenURL: t.baseURL + "/token", ClientID: id, ClientSecret: secret, HTTPClient: setup}}, nil
}

// importGV100AD imports the GV100AD file into dev, whose own directory
// holds only the demo places: the Routing API knows no other Gemeinde.
func (a *admin) importGV100AD(ctx context.Context, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := a.do(ctx, http.MethodPost, "/admin/v1/import/gv100ad", raw, "text/plain; charset=utf-8", http.StatusOK, nil); err != nil {
		return fmt.Errorf("import %s into dev: %w", file, err)
	}
	return nil
}

// provision makes dev offer one destination for each of the n most
// populous Gemeinden of dir, each taking provisionService in its
// Gemeinde, and one back office client per Kreis subscribed to its
// Kreis's destinations, and waits until the routes resolve. dev must
// hold dir already (importGV100AD). a speaks through an untimed client;
// the back offices' receivers, which take part in the load, through hc.
func provision(ctx context.Context, t *target, a *admin, dir *ars.Directory, n int, hc *http.Client, stdout io.Writer) (*provisioned, error) {
	gs, err := topGemeinden(dir, n)
	if err != nil {
		return nil, err
	}
	kreise := map[string][]int{}
	for i, g := range gs {
		kreise[g.ARS[:5]] = append(kreise[g.ARS[:5]], i)
	}
	fmt.Fprintf(stdout, "provisioning %d destinations and %d back offices…\n", n, len(kreise))
	began := time.Now()

	if len(t.demo.Destinations) == 0 {
		return nil, errors.New("dev's demo.json names no destination whose keys provisioning could reuse")
	}
	first := t.demo.Destinations[0]
	enc, err := readKey(first.EncryptionKeyFile)
	if err != nil {
		return nil, err
	}
	sig, err := readKey(first.SigningKeyFile)
	if err != nil {
		return nil, err
	}

	p := &provisioned{dests: make([]*destination, n)}
	var made atomic.Int64
	step := int64(max(1000, n/10))
	err = parallel(ctx, n, func(i int) error {
		g := gs[i]
		dest := &destination{id: uuid.NewString(), service: provisionService, signer: withKID(sig, uuid.NewString())}
		e := withKID(enc, uuid.NewString())
		ring, err := client.NewKeyRing(e)
		if err != nil {
			return err
		}
		dest.ring, dest.enc = ring, []jose.KeyPair{e}
		encJSON, err := e.PublicJSON()
		if err != nil {
			return err
		}
		sigJSON, err := dest.signer.PublicJSON()
		if err != nil {
			return err
		}
		active := store.StatusActive
		kid := e.Public.KeyID
		body, err := json.Marshal(registry.DestinationInput{
			DestinationID: dest.id,
			Status:        &active,
			ContactInformation: &store.ContactInformation{
				LegalName: "Gemeinde " + g.Name, Address: "Rathaus, " + g.PostalCode + " " + g.Name,
				Phone: "+49 30 0", Email: "poststelle-" + g.ARS + "@loadtest.example", Unit: "Meldebehörde",
			},
			Services: []store.Service{{
				Identifier: provisionService,
				Regions:    []string{"DE" + g.ARS},
				SubmissionSchemas: []store.SubmissionSchema{{
					MimeType: "application/json", SchemaURI: "https://schema.fitko.de/fim/s00000000009_1.0.0.schema.json",
				}},
			}},
			EncryptionKID:       &kid,
			EncryptionPublicKey: encJSON,
			SigningPublicKey:    sigJSON,
			MetadataVersions:    []string{"1.0.0"},
		})
		if err != nil {
			return err
		}
		if err := a.do(ctx, http.MethodPost, "/admin/v1/destinations", body, "application/json", http.StatusCreated, nil); err != nil {
			return fmt.Errorf("destination for %s (%s): %w", g.Name, g.ARS, err)
		}
		p.dests[i] = dest
		if m := made.Add(1); m%step == 0 && m < int64(n) {
			fmt.Fprintf(stdout, "  %d of %d destinations, %.0f a second…\n", m, n, float64(m)/time.Since(began).Seconds())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	created := time.Now()

	// One back office per Kreis, subscribed to its Kreis's destinations.
	keys := sortedKeys(kreise)
	toks := make([]*client.ClientCredentials, len(keys))
	err = parallel(ctx, len(keys), func(i int) error {
		var scopes []string
		for _, j := range kreise[keys[i]] {
			scopes = append(scopes, "subscribe:destination:"+p.dests[j].id)
		}
		tok, err := a.createClient(ctx, "loadtest back office "+keys[i], scopes)
		if err != nil {
			return err
		}
		toks[i] = tok
		rc, err := client.New(t.baseURL, client.Tokens(tok), client.HTTPClient(hc), client.AttachmentDir(t.work))
		if err != nil {
			return err
		}
		for _, j := range kreise[keys[i]] {
			p.dests[j].tok, p.dests[j].receive = tok, rc.Receiver()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Each back office's first token is fetched now, not under load, and
	// one at a time: /token reserves a failure of the caller's address
	// for each attempt, and a success made while later reservations
	// are outstanding gives back less than it took, so hundreds of
	// concurrent successes use up the address's failure budget.
	for i, tok := range toks {
		if _, err := tok.Token(ctx); err != nil {
			return nil, fmt.Errorf("token of back office %s: %w", keys[i], err)
		}
	}
	sender, err := a.createClient(ctx, "loadtest sender", []string{"send:region:DE"})
	if err != nil {
		return nil, err
	}
	p.senderID, p.senderKey = sender.ClientID, sender.ClientSecret
	clients := time.Now()

	// The Routing API answers from dev's routing registry, which follows
	// the writes asynchronously.
	for _, i := range []int{0, n - 1} {
		if err := awaitRoute(ctx, t.baseURL, a.hc, gs[i].ARS, p.dests[i].id); err != nil {
			return nil, err
		}
	}
	done := time.Now()
	fmt.Fprintf(stdout, "provisioned in %s: destinations %s (%.0f a second), back offices and sender %s, routes %s\n",
		done.Sub(began).Round(time.Millisecond),
		created.Sub(began).Round(time.Millisecond), float64(n)/created.Sub(began).Seconds(),
		clients.Sub(created).Round(time.Millisecond), done.Sub(clients).Round(time.Millisecond))
	return p, nil
}

// awaitRoute polls GET /v1/routes until the service in the Gemeinde ars
// resolves to destination id.
func awaitRoute(ctx context.Context, base string, hc *http.Client, arsKey, id string) error {
	q := url.Values{"leikaKey": {strings.TrimPrefix(provisionService, "urn:de:fim:leika:leistung:")}, "ars": {arsKey}}
	giveUp := time.Now().Add(2 * time.Minute)
	var last string
	for time.Now().Before(giveUp) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/routes?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		var routes struct {
			Routes []struct {
				DestinationID string `json:"destinationId"`
			} `json:"routes"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = resp.Status + ": " + string(bytes.TrimSpace(b))
		if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &routes) == nil && len(routes.Routes) > 0 && routes.Routes[0].DestinationID == id {
			return nil
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("GET /v1/routes for ARS %s did not name the provisioned destination %s within 2 minutes; last answer %s", arsKey, id, last)
}

// parallel runs f(0..n-1) with provisionWorkers at once and returns the
// first error, after which it starts no more.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(provisionWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// warmRoutes looks each offer's route up once, untimed, before the load.
// A route's destinationSignature is made on its first look-up and kept for
// the destination's state, so a running Amtsbote answers its portals from
// that cache; without this a short run over thousands of destinations
// would mostly measure first look-ups, one PS512 signature each.
func warmRoutes(ctx context.Context, hc *http.Client, base string, ds []demand) error {
	seen := map[offer]bool{}
	var first []demand
	for _, d := range ds {
		if !seen[d.offer] {
			seen[d.offer] = true
			first = append(first, d)
		}
	}
	return parallel(ctx, len(first), func(i int) error {
		d := first[i]
		q := url.Values{"leikaKey": {strings.TrimPrefix(d.offer.service, "urn:de:fim:leika:leistung:")}, "ars": {d.ars}}
		if err := callAPI(ctx, hc, base, nil, http.MethodGet, "/v1/routes?"+q.Encode(), nil, 0, "", http.StatusOK, nil); err != nil {
			return fmt.Errorf("route of %s for %s in %s: %w", d.offer.destination, d.offer.service, d.ars, err)
		}
		return nil
	})
}
