package clustertest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/subscriber"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
)

// service is the LeiKa service every test destination offers.
const service = "urn:de:fim:leika:leistung:99050012000000"

// durable is the subscriber's INBOX consumer.
const durable = "subscriber-08315"

// The destinations' keys are RSA-4096 and slow to make: made once per test
// binary and shared by every destination under a kid of its own.
var (
	encKey = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Encryption, "enc-kreis", "Kreis Breisgau-Hochschwarzwald")
	})
	sigKey = sync.OnceValues(func() (jose.KeyPair, error) {
		return jose.GenerateKeyPair(jose.Signing, "sig-kreis", "Kreis Breisgau-Hochschwarzwald")
	})
)

func keyPair(t testing.TB, f func() (jose.KeyPair, error), kid string) jose.KeyPair {
	t.Helper()
	kp, err := f()
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	kp.Public.KeyID = kid
	return kp
}

// destination is a registered destination of the Kreis.
type destination struct {
	ID  string
	ARS string
}

// deployment is Amtsbote on a three-node JetStream cluster with every
// stream at three replicas: destinations of one Kreis, a sender and the
// receiver's credentials. The roles and the subscriber are started by
// each test, in the test process or as processes of their own.
type deployment struct {
	nodes bustest.Nodes
	admin *bus.Bus // the test's own connection, to every node
	store roles.Store
	reg   *registry.Registry
	dests []destination
	// filter is the subscriber's INBOX filter: the Kreis 08315.
	filter string

	senderID, senderSecret     string
	receiverID, receiverSecret string
	fv                         *fachverfahren
	fvURL                      string
}

// newDeployment starts the cluster, creates the topology at three
// replicas and the subscriber's durable, and registers n destinations and
// the clients in st.
func newDeployment(t *testing.T, st roles.Store, n int) *deployment {
	t.Helper()
	d := &deployment{nodes: bustest.Cluster(t, 3), store: st, fv: newFachverfahren()}
	d.admin = bustest.Connect(t, d.nodes.URL())
	ctx := context.Background()
	flowtest.Eventually(t, 30*time.Second, func() error {
		return d.admin.Ensure(ctx, bus.TopologyConfig{Replicas: 3})
	})
	filter, err := bus.InboxFilter("08315")
	if err != nil {
		t.Fatal(err)
	}
	d.filter = filter
	// AckWait well below the default, so that a delivery whose ack was
	// lost to a failover comes again within the test.
	if err := d.admin.EnsureConsumer(ctx, bus.ConsumerConfig{
		Stream: bus.StreamInbox, Durable: durable, FilterSubjects: []string{filter},
		AckWait: 20 * time.Second, MaxDeliver: -1,
	}); err != nil {
		t.Fatal(err)
	}
	if d.reg, err = registry.New(registry.Config{Store: st, Reference: st}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d.addDestination(t, fmt.Sprintf("083159%06d", i))
	}
	c, secret, err := d.reg.CreateClient(ctx, "test", registry.ClientInput{Name: "sender", Scopes: []string{"send:region:DE08"}})
	if err != nil {
		t.Fatal(err)
	}
	d.senderID, d.senderSecret = c.ID, secret
	var scopes []string
	for _, dest := range d.dests {
		scopes = append(scopes, "subscribe:destination:"+dest.ID)
	}
	c, secret, err = d.reg.CreateClient(ctx, "test", registry.ClientInput{Name: "receiver", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	d.receiverID, d.receiverSecret = c.ID, secret
	srv := httptest.NewServer(d.fv)
	t.Cleanup(srv.Close)
	d.fvURL = srv.URL + "/eingang"
	return d
}

func (d *deployment) addDestination(t *testing.T, ars string) {
	t.Helper()
	id := uuid.NewString()
	enc, sig := keyPair(t, encKey, "enc-"+id), keyPair(t, sigKey, "sig-"+id)
	encJSON, err := enc.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	sigJSON, err := sig.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	dest := store.Destination{
		ID: id, Status: store.StatusActive,
		Contact: store.ContactInformation{
			LegalName: "Gemeinde " + ars, Address: "Rathaus", Phone: "+49 761 0", Email: "post@" + ars + ".example",
		},
		EncryptionKID: enc.Public.KeyID, SigningKID: sig.Public.KeyID,
		MetadataVersions: []string{"1.0.0"}, HomeRegion: ars,
		Services: []store.Service{{
			Identifier: service, Regions: []string{"DE" + ars},
			SubmissionSchemas: []store.SubmissionSchema{{MimeType: "application/json", SchemaURI: "https://schema.fitko.de/fim/s00000000009_1.0.0.schema.json"}},
		}},
	}
	keys := []store.Key{
		{DestinationID: id, KID: dest.EncryptionKID, Use: store.UseEncryption, JWK: encJSON},
		{DestinationID: id, KID: dest.SigningKID, Use: store.UseSigning, JWK: sigJSON},
	}
	if _, err := d.reg.CreateDestination(context.Background(), "test", dest, keys); err != nil {
		t.Fatalf("create destination %s: %v", ars, err)
	}
	d.dests = append(d.dests, destination{ID: id, ARS: ars})
}

// testLogger writes warnings and errors to the test's output with -v.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// gateway is a set of roles running in the test process.
type gateway struct {
	URL string
	run *flowtest.Running
}

// startRoles runs r, with the deployment's store unless r has one, on a
// connection to every node and a listener of its own; the gateway's public
// URL is its own address unless r names one.
func (d *deployment) startRoles(t *testing.T, r roles.Roles) *gateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Listener = ln
	if r.Bus == nil {
		r.Bus = bustest.Connect(t, d.nodes.URL())
	}
	if r.Store == nil {
		r.Store = d.store
	}
	if r.PublicURL == "" {
		r.PublicURL = "http://" + ln.Addr().String()
	}
	r.Key = flowtest.Signer(t)
	r.Log = testLogger()
	return &gateway{URL: "http://" + ln.Addr().String(), run: flowtest.Start(t, &r)}
}

// api returns a Submission API client at baseURL whose requests are
// retried long enough to outlast a leader election or a restart.
func api(t testing.TB, baseURL, id, secret string) *client.Client {
	t.Helper()
	c, err := client.New(baseURL, client.Credentials(id, secret), client.Retries(8, 250*time.Millisecond),
		client.AttachmentDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// subscriberConfig writes the subscriber's configuration, keys and all,
// into a new directory: pickup over NATS from the durable, delivery into
// the Fachverfahren, the Submission API at baseURL.
func (d *deployment) subscriberConfig(t *testing.T, baseURL string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "mode: nats\nnats:\n  url: %s\n  durable: %s\n  filters: [%q]\n", d.nodes.URL(), durable, d.filter)
	fmt.Fprintf(&b, "http:\n  baseUrl: %s\n  clientId: %s\n  clientSecret: %s\n", baseURL, d.receiverID, d.receiverSecret)
	b.WriteString("concurrency: 8\ndestinations:\n")
	for _, dest := range d.dests {
		files := map[string]jose.KeyPair{
			filepath.Join(dir, dest.ID+".enc.jwk.json"): keyPair(t, encKey, "enc-"+dest.ID),
			filepath.Join(dir, dest.ID+".sig.jwk.json"): keyPair(t, sigKey, "sig-"+dest.ID),
		}
		for file, kp := range files {
			raw, err := kp.MarshalPrivate()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, raw, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&b, "  - id: %s\n    encryptionKeys: [%s]\n    signingKey: %s\n",
			dest.ID, filepath.Join(dir, dest.ID+".enc.jwk.json"), filepath.Join(dir, dest.ID+".sig.jwk.json"))
	}
	fmt.Fprintf(&b, "sink:\n  kind: http\n  http:\n    url: %s\n    timeout: 20s\n    maxAttempts: 5\n", d.fvURL)
	file := filepath.Join(dir, "subscriber.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// startSubscriber runs the subscriber engine in the test process.
func (d *deployment) startSubscriber(t *testing.T, baseURL string) *flowtest.Running {
	t.Helper()
	conf, err := config.Load(d.subscriberConfig(t, baseURL))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := conf.Sink.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	sub, err := subscriber.New(subscriber.Config{
		Conf: conf, Sink: sk, API: api(t, baseURL, d.receiverID, d.receiverSecret),
		Bus: bustest.Connect(t, d.nodes.URL()), Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return flowtest.Start(t, sub)
}

// fachverfahren is the authority's HTTP intake: it stores each
// Idempotency-Key's submission once and counts every store, and every
// delivery, a repeated one included.
type fachverfahren struct {
	mu     sync.Mutex
	stored map[string][]byte // the data by submission id
	copies map[string]int    // stores per submission id: must stay 1
	posts  map[string]int    // deliveries per submission id
	// differing are repeated deliveries whose data is not what was stored.
	differing []string
	// afterStore, when set, runs once after a store, before the answer.
	afterStore func(key string)
}

func newFachverfahren() *fachverfahren {
	return &fachverfahren{stored: map[string][]byte{}, copies: map[string]int{}, posts: map[string]int{}}
}

func (f *fachverfahren) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	var doc struct {
		SubmissionID string `json:"submissionId"`
		Data         string `json:"data"`
		Attachments  []struct {
			Content string `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.SubmissionID != key || len(doc.Attachments) != 1 {
		http.Error(w, "not a submission", http.StatusBadRequest)
		return
	}
	if _, err := base64.StdEncoding.DecodeString(doc.Attachments[0].Content); err != nil {
		http.Error(w, "attachment", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts[key]++
	if prev, ok := f.stored[key]; ok {
		if string(prev) != doc.Data {
			f.differing = append(f.differing, key)
		}
		w.WriteHeader(http.StatusOK) // a repeated key: stored already
		return
	}
	f.stored[key] = []byte(doc.Data)
	f.copies[key]++
	if hook := f.afterStore; hook != nil {
		// Stored, not yet answered: the subscriber does not know.
		f.afterStore = nil
		f.mu.Unlock()
		hook(key)
		f.mu.Lock()
	}
	w.WriteHeader(http.StatusCreated)
}

// onNextStore has hook run once, after the next submission is stored and
// before the answer is written, with its Idempotency-Key.
func (f *fachverfahren) onNextStore(hook func(key string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.afterStore = hook
}

func (f *fachverfahren) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stored)
}

// sent is one submission the API answered 202 to.
type sent struct {
	n       int
	receipt client.Receipt
	at      time.Time // when Submit returned
	dest    destination
}

// load submits continuously from several senders until stopped.
type load struct {
	d      *deployment
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	next   int
	sent   []sent
	failed []error
}

// startLoad submits from workers senders, each through the gateway at the
// next of baseURLs in turn, one submission after the other with pause
// between them.
func (d *deployment) startLoad(t *testing.T, workers int, pause time.Duration, baseURLs ...string) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{d: d, cancel: cancel}
	for w := range workers {
		c := api(t, baseURLs[w%len(baseURLs)], d.senderID, d.senderSecret)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				l.mu.Lock()
				n := l.next
				l.next++
				l.mu.Unlock()
				dest := d.dests[n%len(d.dests)]
				// A submission started is finished even when the load stops.
				sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
				r, err := submit(sctx, c, dest, n)
				scancel()
				l.mu.Lock()
				if err != nil {
					l.failed = append(l.failed, fmt.Errorf("submission %d: %w", n, err))
				} else {
					l.sent = append(l.sent, sent{n: n, receipt: r, at: time.Now(), dest: dest})
				}
				l.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for the submissions under way.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// accepted returns how many submissions the API accepted so far.
func (l *load) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sent)
}

// waitProgress waits until n more submissions were accepted by the API
// and stored by the Fachverfahren than when it was called.
func (l *load) waitProgress(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	api, sink := l.accepted(), l.d.fv.count()
	flowtest.Eventually(t, timeout, func() error {
		if a, s := l.accepted(), l.d.fv.count(); a < api+n || s < sink+n {
			return fmt.Errorf("%d submitted and %d stored since, want %d of each", a-api, s-sink, n)
		}
		return nil
	})
}

func data(dest destination, n int) string {
	return fmt.Sprintf(`{"antrag":%d,"gemeinde":%q}`, n, dest.ARS)
}

// submit hands in one submission with JSON data and an attachment.
func submit(ctx context.Context, c *client.Client, dest destination, n int) (client.Receipt, error) {
	return c.Sender().Submit(ctx, client.Submission{
		DestinationID: dest.ID,
		ServiceType:   client.ServiceType{Identifier: service, Name: "Gewerbeanmeldung"},
		Region:        "DE" + dest.ARS,
		Data:          []byte(data(dest, n)),
		Attachments: []client.Attachment{{
			Filename: fmt.Sprintf("antrag-%d.pdf", n), MimeType: "application/pdf",
			Bytes: []byte(strings.Repeat(fmt.Sprintf("%%PDF-%d ", n), 200)),
		}},
	})
}

// window is a span of time in which something was down.
type window struct {
	name       string
	start, end time.Time
}

// verify waits until every submission the API accepted is stored by the
// Fachverfahren and accepted, then checks that each was stored exactly
// once, that EVENTS and the store hold each case's events exactly once,
// and that the sender sees each case accepted. It logs submit to accepted
// p50 and p99 overall, for the submissions in flight during each window,
// and for the others.
func (l *load) verify(t *testing.T, baseURL string, timeout time.Duration, windows ...window) {
	t.Helper()
	l.stop()
	d := l.d
	for _, err := range l.failed {
		t.Errorf("the API did not accept a submission: %v", err)
	}
	if len(l.sent) == 0 {
		t.Fatal("no submission was accepted")
	}
	flowtest.Eventually(t, timeout, func() error {
		d.fv.mu.Lock()
		defer d.fv.mu.Unlock()
		missing := 0
		for _, s := range l.sent {
			if _, ok := d.fv.stored[s.receipt.SubmissionID]; !ok {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d accepted submissions not stored by the Fachverfahren", missing, len(l.sent))
		}
		return nil
	})

	// The Fachverfahren stored each exactly once, with its data; a
	// submission it stored is one the API accepted (none failed).
	d.fv.mu.Lock()
	for _, s := range l.sent {
		id := s.receipt.SubmissionID
		if c := d.fv.copies[id]; c != 1 {
			t.Errorf("%s stored %d times", id, c)
		}
		if got, want := string(d.fv.stored[id]), data(s.dest, s.n); got != want {
			t.Errorf("%s: data %s, want %s", id, got, want)
		}
	}
	if len(l.failed) == 0 && len(d.fv.stored) != len(l.sent) {
		t.Errorf("the Fachverfahren stored %d submissions, the API accepted %d", len(d.fv.stored), len(l.sent))
	}
	for _, id := range d.fv.differing {
		t.Errorf("%s delivered again with other data than the first time", id)
	}
	d.fv.mu.Unlock()

	// EVENTS holds each case's events once, and the ledger projected
	// exactly those into the store.
	accepted := eventsByCase(t, d.admin)
	ctx := context.Background()
	flowtest.Eventually(t, timeout, func() error {
		for _, s := range l.sent {
			if err := checkCase(ctx, d.store, accepted[s.receipt.CaseID], s.receipt); err != nil {
				accepted = eventsByCase(t, d.admin)
				return err
			}
		}
		return nil
	})

	sender := api(t, baseURL, d.senderID, d.senderSecret).Sender()
	for _, s := range l.sent {
		st, err := sender.StatusOf(ctx, s.receipt)
		if err != nil {
			t.Fatalf("status of %s: %v", s.receipt.SubmissionID, err)
		}
		if st.Decision != client.StateAccepted {
			t.Errorf("%s: decision %q, want accepted", s.receipt.SubmissionID, st.Decision)
		}
	}

	// Counted once every case is accepted: a delivery repeated after a
	// crash comes before its accept.
	d.fv.mu.Lock()
	repeated := 0
	for _, n := range d.fv.posts {
		repeated += n - 1
	}
	d.fv.mu.Unlock()

	var all, during, outside []time.Duration
	each := make([][]time.Duration, len(windows))
	for _, s := range l.sent {
		at := accepted[s.receipt.CaseID].acceptedAt
		lat := at.Sub(s.at)
		all = append(all, lat)
		in := false
		for i, w := range windows {
			// In flight while something was down: handed in before it
			// came back, accepted after it went.
			if s.at.Before(w.end) && at.After(w.start) {
				each[i] = append(each[i], lat)
				in = true
			}
		}
		if in {
			during = append(during, lat)
		} else {
			outside = append(outside, lat)
		}
	}
	t.Logf("%d submissions accepted by the API, stored once each and accepted (%d repeated deliveries answered by the Idempotency-Key); submit to accepted p50 %s, p99 %s; in flight during the %d outages (%d submissions) p50 %s, p99 %s; outside (%d) p50 %s, p99 %s",
		len(l.sent), repeated, pct(all, 0.5), pct(all, 0.99), len(windows), len(during), pct(during, 0.5), pct(during, 0.99),
		len(outside), pct(outside, 0.5), pct(outside, 0.99))
	for i, w := range windows {
		t.Logf("%s: down %s; %d submissions in it, submit to accepted p50 %s, p99 %s",
			w.name, w.end.Sub(w.start).Round(time.Millisecond), len(each[i]), pct(each[i], 0.5), pct(each[i], 0.99))
	}
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))].Round(time.Millisecond)
}

// caseEvents are one case's events as EVENTS holds them.
type caseEvents struct {
	jtis       []string
	types      []string // event URIs, in stream order
	acceptedAt time.Time
}

// eventsByCase reads all of EVENTS.
func eventsByCase(t *testing.T, b *bus.Bus) map[string]*caseEvents {
	t.Helper()
	out := map[string]*caseEvents{}
	for _, m := range flowtest.Messages(t, b, bus.StreamEvents, bus.PrefixEvents+".") {
		_, c, err := set.Parse(strings.TrimSpace(string(m.Data)))
		if err != nil {
			t.Fatalf("EVENTS %d holds a token that does not parse: %v", m.Sequence, err)
		}
		caseID, err := c.CaseID()
		if err != nil {
			t.Fatalf("EVENTS %d: %v", m.Sequence, err)
		}
		uri, _, _ := c.Event()
		ce := out[caseID]
		if ce == nil {
			ce = &caseEvents{}
			out[caseID] = ce
		}
		ce.jtis = append(ce.jtis, c.JTI)
		ce.types = append(ce.types, uri)
		if uri == set.AcceptSubmission {
			ce.acceptedAt = m.Time
		}
	}
	return out
}

// wantEvents are the events of a case submitted, fetched by the
// subscriber and accepted.
var wantEvents = []string{set.CreateSubmission, set.SubmitSubmission, set.NotifySubmission, set.AcceptSubmission}

// checkCase compares a case's events in EVENTS with wantEvents and with
// the store's log of the case.
func checkCase(ctx context.Context, st roles.Store, ev *caseEvents, r client.Receipt) error {
	if ev == nil {
		return fmt.Errorf("case %s: no events in EVENTS", r.CaseID)
	}
	// The signer publishes create- and submit-submission from its outbox
	// in any order; each must be there once.
	if got := slices.Sorted(slices.Values(ev.types)); !slices.Equal(got, slices.Sorted(slices.Values(wantEvents))) {
		return fmt.Errorf("case %s: EVENTS holds %v, want %v", r.CaseID, names(ev.types), names(wantEvents))
	}
	evs, _, err := st.Events(ctx, r.CaseID, store.Page{Limit: store.MaxPageLimit})
	if err != nil {
		return fmt.Errorf("case %s: store events: %w", r.CaseID, err)
	}
	var jtis []string
	for _, e := range evs {
		jtis = append(jtis, e.JTI)
	}
	if !slices.Equal(jtis, ev.jtis) {
		return fmt.Errorf("case %s: the store holds events %v, EVENTS %v", r.CaseID, jtis, ev.jtis)
	}
	return nil
}

func names(uris []string) []string {
	out := make([]string, len(uris))
	for i, u := range uris {
		out[i] = set.Name(u)
	}
	return out
}
