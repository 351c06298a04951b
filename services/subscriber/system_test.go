package subscriber_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// service is the LeiKa service every test destination offers.
const service = "urn:de:fim:leika:leistung:99050012000000"

// Key pairs are RSA-4096 and slow to make: each is made once per test
// binary and shared by the destinations of a test, which is how one
// authority with many destinations may run it.
var (
	encKey = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Encryption, "test-enc-1", "Testbehörde")
	})
	sigKey = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Signing, "test-sig-1", "Testbehörde")
	})
	otherEncKey = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Encryption, "test-enc-1", "Falsche Behörde")
	})
)

// withKID returns kp under another kid: kids are unique across
// destinations, the key material need not be.
func withKID(kp jose.KeyPair, kid string) jose.KeyPair {
	kp.Public.KeyID = kid
	return kp
}

func keyPair(t testing.TB, f func() (jose.KeyPair, error)) jose.KeyPair {
	t.Helper()
	kp, err := f()
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return kp
}

// system is Amtsbote running in the test process: embedded NATS with
// JetStream, SQLite, and the gateway, signer, router and ledger.
type system struct {
	dir     string
	natsURL string // with Amtsbote's own credentials
	natsPW  string // Amtsbote's NATS password
	bus     *bus.Bus
	store   roles.Store
	baseURL string
	reg     *registry.Registry
	ln      net.Listener
	dests   []testDestination
	sender  *client.Client
}

type testDestination struct {
	ID  string
	ARS string
}

// natsUsers are the NATS users of a system besides Amtsbote's own.
type natsUser = bus.User

func newSystem(t *testing.T, users ...natsUser) *system {
	t.Helper()
	s := &system{dir: t.TempDir(), natsPW: uuid.NewString()}
	all := append([]bus.User{{Name: "amtsbote", Password: s.natsPW}}, users...)
	ns, err := bus.RunEmbedded(bus.EmbeddedConfig{Dir: filepath.Join(s.dir, "jetstream"), Port: -1, Users: all})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	s.natsURL = ns.ClientURL()
	ctx := context.Background()
	if s.bus, err = bus.Connect(ctx, s.natsURL, nats.UserInfo("amtsbote", s.natsPW)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.bus.Close() })
	if err := s.bus.Ensure(ctx, bus.TopologyConfig{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	s.store = flowtest.OpenSQLite(t)
	if s.reg, err = registry.New(registry.Config{Store: s.store, Reference: s.store}); err != nil {
		t.Fatal(err)
	}
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	s.baseURL = "http://" + s.ln.Addr().String()
	return s
}

// addDestinations registers one destination per ARS, each offering
// service for its own Gemeinde, with the shared test keys.
func (s *system) addDestinations(t *testing.T, arsList ...string) []testDestination {
	t.Helper()
	return s.addDestinationsKeyed(t, keyPair(t, encKey), arsList...)
}

// addDestinationsKeyed is addDestinations with the encryption key encKP.
func (s *system) addDestinationsKeyed(t *testing.T, encKP jose.KeyPair, arsList ...string) []testDestination {
	t.Helper()
	var out []testDestination
	for _, a := range arsList {
		id := uuid.NewString()
		enc, sig := withKID(encKP, "enc-"+id), withKID(keyPair(t, sigKey), "sig-"+id)
		encJSON, err := enc.PublicJSON()
		if err != nil {
			t.Fatal(err)
		}
		sigJSON, err := sig.PublicJSON()
		if err != nil {
			t.Fatal(err)
		}
		d := store.Destination{
			ID: id, Status: store.StatusActive,
			Contact: store.ContactInformation{
				LegalName: "Gemeinde " + a, Address: "Rathaus", Phone: "+49 761 0", Email: "post@" + a + ".example",
			},
			EncryptionKID: enc.Public.KeyID, SigningKID: sig.Public.KeyID,
			MetadataVersions: []string{"1.0.0"}, HomeRegion: a,
			Services: []store.Service{{
				Identifier: service, Regions: []string{"DE" + a},
				SubmissionSchemas: []store.SubmissionSchema{{MimeType: "application/json", SchemaURI: "https://schema.fitko.de/fim/s00000000009_1.0.0.schema.json"}},
			}},
		}
		keys := []store.Key{
			{DestinationID: id, KID: d.EncryptionKID, Use: store.UseEncryption, JWK: encJSON},
			{DestinationID: id, KID: d.SigningKID, Use: store.UseSigning, JWK: sigJSON},
		}
		if _, err := s.reg.CreateDestination(context.Background(), "test", d, keys); err != nil {
			t.Fatalf("create destination %s: %v", a, err)
		}
		out = append(out, testDestination{ID: id, ARS: a})
	}
	s.dests = append(s.dests, out...)
	return out
}

// clientFor registers an OAuth client with scopes and returns its id and secret.
func (s *system) clientFor(t *testing.T, name string, scopes ...string) (string, string) {
	t.Helper()
	c, secret, err := s.reg.CreateClient(context.Background(), "test", registry.ClientInput{Name: name, Scopes: scopes})
	if err != nil {
		t.Fatalf("create client %s: %v", name, err)
	}
	return c.ID, secret
}

// receiverOf registers a client subscribing to dests.
func (s *system) receiverOf(t *testing.T, dests ...testDestination) (string, string) {
	t.Helper()
	var scopes []string
	for _, d := range dests {
		scopes = append(scopes, "subscribe:destination:"+d.ID)
	}
	return s.clientFor(t, "receiver "+uuid.NewString()[:8], scopes...)
}

// start runs Amtsbote's roles until the test ends and makes the sender.
func (s *system) start(t *testing.T) { s.startRoles(t, true) }

// startWithoutSigner is start without the signer: Amtsbote's own events
// stay in the outbox until startSigner.
func (s *system) startWithoutSigner(t *testing.T) { s.startRoles(t, false) }

func (s *system) startRoles(t *testing.T, signer bool) {
	t.Helper()
	flowtest.Start(t, &roles.Roles{
		Bus: s.bus, Store: s.store, Key: flowtest.Signer(t), PublicURL: s.baseURL, Log: testLog(),
		Gateway: true, Listener: s.ln, Signer: signer, Router: true, Ledger: true,
	})
	id, secret := s.clientFor(t, "sender", "send:region:DE08")
	s.sender = s.api(t, id, secret)
}

// startSigner runs a signer beside roles started without one.
func (s *system) startSigner(t *testing.T) {
	t.Helper()
	flowtest.Start(t, &roles.Roles{Bus: s.bus, Store: s.store, Key: flowtest.Signer(t), PublicURL: s.baseURL, Log: testLog(), Signer: true})
}

func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// api returns a Submission API client with a client's credentials.
func (s *system) api(t testing.TB, id, secret string) *client.Client {
	t.Helper()
	c, err := client.New(s.baseURL, client.Credentials(id, secret), client.Retries(4, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// submit hands in one submission to d with JSON data and an attachment.
func (s *system) submit(ctx context.Context, c *client.Client, d testDestination, n int) (client.Receipt, error) {
	return c.Sender().Submit(ctx, client.Submission{
		DestinationID: d.ID,
		ServiceType:   client.ServiceType{Identifier: service, Name: "Gewerbeanmeldung"},
		Region:        "DE" + d.ARS,
		Data:          []byte(fmt.Sprintf(`{"antrag":%d,"gemeinde":%q}`, n, d.ARS)),
		Attachments: []client.Attachment{{
			Filename: fmt.Sprintf("antrag-%d.pdf", n), MimeType: "application/pdf",
			Bytes: []byte(strings.Repeat(fmt.Sprintf("%%PDF-%d ", n), 200)),
		}},
	})
}

// submitRange submits the submissions numbered from to to-1 to d as the
// sender and returns their receipts.
func (s *system) submitRange(t *testing.T, d testDestination, from, to int) []client.Receipt {
	t.Helper()
	var out []client.Receipt
	for i := from; i < to; i++ {
		r, err := s.submit(context.Background(), s.sender, d, i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// httpSink starts a Fachverfahren answering with h and loads a
// configuration of d in mode http that delivers into it, one attempt per
// delivery.
func (s *system) httpSink(t *testing.T, rid, rsecret string, d testDestination, h http.HandlerFunc) (*config.Config, sink.Sink) {
	t.Helper()
	fv := httptest.NewServer(h)
	t.Cleanup(fv.Close)
	sinkYAML := fmt.Sprintf("sink:\n  kind: http\n  http:\n    url: %s\n    maxAttempts: 1\n", fv.URL)
	return loadConfig(t, s.configYAML(t, t.TempDir(), "http", "", rid, rsecret, sinkYAML, keyPair(t, encKey), nil, d))
}

// sinkBack makes the directory sink's folder again, waits until every
// submission of receipts is accepted and returns what the folder holds.
func (s *system) sinkBack(t *testing.T, sinkDir string, receipts []client.Receipt) map[string]bool {
	t.Helper()
	if err := os.Mkdir(sinkDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, r := range receipts {
		waitAccepted(t, s.sender, r, 30*time.Second)
	}
	return delivered(t, sinkDir)
}

// writeKeys writes the private test keys into dir and returns their paths.
func writeKeys(t *testing.T, dir, id string, enc jose.KeyPair) (string, string) {
	t.Helper()
	encFile, sigFile := filepath.Join(dir, id+".enc.jwk.json"), filepath.Join(dir, id+".sig.jwk.json")
	for file, kp := range map[string]jose.KeyPair{encFile: withKID(enc, "enc-"+id), sigFile: withKID(keyPair(t, sigKey), "sig-"+id)} {
		raw, err := kp.MarshalPrivate()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return encFile, sigFile
}

// natsPickup is the pickup section of a configuration in mode nats on
// durable, as the backbone's own NATS user.
func (s *system) natsPickup(durable string) string {
	return fmt.Sprintf("nats:\n  url: %s\n  user: amtsbote\n  password: %s\n  durable: %s\n", s.natsURL, s.natsPW, durable)
}

// configYAML is a subscriber configuration of dests with the given pickup
// section (a nats: one, or "" in mode http) and sink section; a
// destination named in other holds that encryption key instead of enc.
func (s *system) configYAML(t *testing.T, dir, mode, pickup, receiverID, receiverSecret, sinkYAML string, enc jose.KeyPair, other map[string]jose.KeyPair, dests ...testDestination) string {
	t.Helper()

	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\n%s", mode, pickup)
	fmt.Fprintf(&b, "http:\n  baseUrl: %s\n  clientId: %s\n  clientSecret: %s\n", s.baseURL, receiverID, receiverSecret)
	if mode == "http" {
		b.WriteString("  pollInterval: 1s\n")
	}
	b.WriteString("concurrency: 8\ndestinations:\n")
	for _, d := range dests {
		kp, ok := other[d.ID]
		if !ok {
			kp = enc
		}
		encFile, sigFile := writeKeys(t, dir, d.ID, kp)
		fmt.Fprintf(&b, "  - id: %s\n    encryptionKeys: [%s]\n    signingKey: %s\n", d.ID, encFile, sigFile)
	}
	b.WriteString(sinkYAML)
	file := filepath.Join(dir, "subscriber.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// kreisARS returns n Gemeinde ARS of the Kreis Breisgau-Hochschwarzwald
// (08315): the real ones from the shared GV100AD extract when it is
// there, else made up within the Kreis.
func kreisARS(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	if f, err := os.Open(sharedPath(t)); err == nil {
		defer f.Close()
		rows, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if len(r) >= 4 && r[3] == "municipality" && strings.HasPrefix(r[0], "08315") && len(out) < n {
				out = append(out, r[0])
			}
		}
	}
	for i := 0; len(out) < n; i++ {
		out = append(out, "083159"+fmt.Sprintf("%06d", i))
	}
	return out
}

// sharedPath is the shared municipalities list beside the module root,
// which may be absent.
func sharedPath(*testing.T) string {
	return filepath.Join("..", "..", "..", "shared", "data", "municipalities.csv")
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	flowtest.Eventually(t, timeout, f)
}

// statusOf reads the sender's verified view of a submission.
// waitAccepted waits up to timeout for the sender c to see r accepted.
func waitAccepted(t *testing.T, c *client.Client, r client.Receipt, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		st, err := statusOf(context.Background(), c, r)
		if err == nil && st.Decision != client.StateAccepted {
			return fmt.Errorf("submission %s: decision %s", r.SubmissionID, st.Decision)
		}
		return err
	})
}

func statusOf(ctx context.Context, c *client.Client, r client.Receipt) (client.Status, error) {
	st, err := c.Sender().StatusOf(ctx, r)
	if err != nil {
		return st, err
	}
	if st.Decision == "" {
		return st, errors.New("no decision yet: " + string(st.State))
	}
	return st, nil
}
