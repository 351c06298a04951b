package clustertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/cluster"
	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

// TestKillRoleProcesses runs the distributed topology as processes (three
// nats-server nodes, two gateways behind the load balancer, two routers,
// ledger, signer, delivery, on PostgreSQL) and a real amtsbote subscriber
// process delivering into the Fachverfahren, and submits continuously
// while a router, then a gateway, then the subscriber is killed with
// SIGKILL and started again a few seconds later on the same arguments:
// the gateway while it handles a submit, the subscriber after the
// Fachverfahren stored a submission and before it answered. Every
// submission the API accepted reaches the Fachverfahren exactly once
// (the unanswered one delivered again) and INBOX once, ends accepted, and
// each case's events are in EVENTS and the store once each. It logs
// submit to accepted p99 in each kill window and outside them.
func TestKillRoleProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds amtsbote and nats-server and runs eleven processes")
	}
	dbURL := flowtest.FreshSchema(t)
	workers, pause, progress, down := 3, time.Second, 4, 4*time.Second
	start := time.Now()
	bin := t.TempDir()
	buildBinaries(t, bin)
	t.Logf("built amtsbote and nats-server in %s", time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	logw := &testWriter{t: t}
	t.Cleanup(logw.close)
	dir := t.TempDir()
	t.Cleanup(func() { dumpLogs(t, filepath.Join(dir, "logs")) })
	c, err := cluster.Start(ctx, cluster.Config{
		Dir: dir, Amtsbote: filepath.Join(bin, "amtsbote"), NATSServer: filepath.Join(bin, "nats-server"),
		DatabaseURL: dbURL, BasePort: freeBasePort(t), Replicas: 3, Log: logw,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	t.Logf("cluster up after %s: %s", time.Since(start).Round(time.Millisecond), c.PublicURL)

	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	d := &deployment{store: st, fv: newFachverfahren()}
	d.admin = bustest.Connect(t, c.NATSURL)
	srv := httptest.NewServer(d.fv)
	t.Cleanup(srv.Close)
	d.fvURL = srv.URL + "/eingang"
	demo := readDemo(t, c.Demo, d)

	// The durable is the operator's: the subscriber only binds to it.
	// AckWait short, so that what the killed subscriber held comes again
	// within the test.
	var filters []string
	for _, dest := range demo.Destinations {
		f, err := bus.InboxDestinationFilter(dest.DestinationID)
		if err != nil {
			t.Fatal(err)
		}
		filters = append(filters, f)
	}
	if err := d.admin.EnsureConsumer(ctx, bus.ConsumerConfig{
		Stream: bus.StreamInbox, Durable: durable, FilterSubjects: filters, AckWait: 15 * time.Second, MaxDeliver: -1,
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.StartSubscriber(ctx, demoSubscriberConfig(t, c, demo, d)); err != nil {
		t.Fatal(err)
	}

	// Two senders go through the load balancer, a third straight to
	// gateway-1, through a proxy that has it killed while it handles a
	// submit.
	gw1 := newKillProxy(t, fmt.Sprintf("http://127.0.0.1:%d", c.Ports.Roles["gateway-1"]))
	l := d.startLoad(t, workers, pause, c.PublicURL, c.PublicURL, gw1.url)
	l.waitProgress(t, progress, 2*time.Minute)

	var (
		windows    []window
		unanswered string // the submission whose delivery the subscriber died in
	)
	for _, name := range []string{"router-1", "gateway-1", "subscriber"} {
		pid := c.Processes()[name]
		var w window
		if name == "subscriber" {
			// Killed between the Fachverfahren's store and its answer:
			// the delivery must come again, and be stored once.
			killed := make(chan error, 1)
			d.fv.onNextStore(func(key string) {
				w = window{name: name + " killed, a delivery unanswered", start: time.Now()}
				unanswered = key
				killed <- c.KillRole(name)
			})
			select {
			case err := <-killed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Minute):
				t.Fatal("no delivery to the Fachverfahren within a minute")
			}
		} else if name == "gateway-1" {
			killed := make(chan error, 1)
			gw1.onNextSubmit(func(path string) {
				w = window{name: name + " killed, a submit unanswered", start: time.Now()}
				killed <- c.KillRole(name)
			})
			select {
			case err := <-killed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Minute):
				t.Fatal("no submit through gateway-1 within a minute")
			}
			t.Logf("submit through gateway-1 as it was killed: %s", <-gw1.outcome)
		} else {
			w = window{name: name + " killed", start: time.Now()}
			if err := c.KillRole(name); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(down)
		if err := c.StartRole(ctx, name); err != nil {
			t.Fatal(err)
		}
		w.end = time.Now()
		windows = append(windows, w)
		t.Logf("%s (pid %d) killed, started again as pid %d after %s; %d submissions accepted so far (%s)",
			name, pid, c.Processes()[name], w.end.Sub(w.start).Round(time.Millisecond), l.accepted(), time.Since(start).Round(time.Second))
		l.waitProgress(t, progress, 2*time.Minute)
	}
	l.verify(t, c.PublicURL, 2*time.Minute, windows...)
	// The subscriber died before the Fachverfahren's answer, so it could
	// not know the submission stored: it must have delivered it again.
	d.fv.mu.Lock()
	n := d.fv.posts[unanswered]
	d.fv.mu.Unlock()
	t.Logf("%s, stored as the subscriber was killed, delivered %d times", unanswered, n)
	if n < 2 {
		t.Errorf("%s: delivered %d times; the subscriber died before the answer and must deliver it again", unanswered, n)
	}

	// The routers routed each submission to INBOX once: a repeat by the
	// restarted router, or by the other taking over its INGRESS message,
	// is dropped by its Nats-Msg-Id. (INGRESS, a work queue, keeps
	// nothing to count.)
	routed := map[string]int{}
	for _, m := range flowtest.Messages(t, d.admin, bus.StreamInbox, bus.PrefixInbox+".") {
		routed[m.Header.Get("Nats-Msg-Id")]++
	}
	for _, s := range l.sent {
		if n := routed[s.receipt.SubmissionID]; n != 1 {
			t.Errorf("INBOX holds %s %d times", s.receipt.SubmissionID, n)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if cons, err := d.admin.JetStream().Consumer(cctx, bus.StreamInbox, durable); err != nil {
		t.Errorf("subscriber durable: %v", err)
	} else if info, err := cons.Info(cctx); err != nil {
		t.Errorf("subscriber durable: %v", err)
	} else {
		t.Logf("the subscriber's durable made %d deliveries of %d INBOX messages", info.Delivered.Consumer, len(routed))
	}
	t.Logf("%d kills; done after %s", len(windows), time.Since(start).Round(time.Second))
}

// buildBinaries builds amtsbote and nats-server into dir, without the race
// detector: the processes are the system under test, not the test.
func buildBinaries(t *testing.T, dir string) {
	t.Helper()
	for _, b := range [][2]string{{"amtsbote", "github.com/amtsbote/amtsbote"}, {"nats-server", "github.com/nats-io/nats-server/v2"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b[0]), b[1])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
}

// freeBasePort finds a base port whose cluster ports are all free now.
func freeBasePort(t *testing.T) int {
	t.Helper()
	// Below Linux's ephemeral ports (32768 and up), which an outgoing
	// connection or a :0 listener of any process may take between this
	// check and a role's listen; a cluster's ports span less than 100.
	const lowest, ephemeral = 20000, 32768
	const ranges = (ephemeral - lowest) / 100
	first := os.Getpid() % ranges
	for i := range ranges {
		base := lowest + (first+i)%ranges*100
		p := cluster.PortsFrom(base)
		all := []int{p.Front, p.Subscriber}
		all = append(append(append(all, p.NATS[:]...), p.Routes[:]...), p.Monitor[:]...)
		for _, n := range p.Roles {
			all = append(all, n)
		}
		free := true
		for _, port := range all {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of ports for the cluster")
	return 0
}

// demoFile is what the test reads of the cluster's demo.json.
type demoFile struct {
	Clients []struct {
		Role, ClientID, ClientSecret string
	}
	Destinations []struct {
		DestinationID, Region             string
		Services                          []string
		EncryptionKeyFile, SigningKeyFile string
	}
}

// readDemo reads demo.json and gives d the sender's and receiver's
// credentials and the destinations that take the test's service.
func readDemo(t *testing.T, file string, d *deployment) demoFile {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var demo demoFile
	if err := json.Unmarshal(raw, &demo); err != nil {
		t.Fatal(err)
	}
	for _, c := range demo.Clients {
		switch c.Role {
		case "sender":
			d.senderID, d.senderSecret = c.ClientID, c.ClientSecret
		case "receiver":
			d.receiverID, d.receiverSecret = c.ClientID, c.ClientSecret
		}
	}
	for _, dest := range demo.Destinations {
		for _, s := range dest.Services {
			if s == service {
				d.dests = append(d.dests, destination{ID: dest.DestinationID, ARS: strings.TrimPrefix(dest.Region, "DE")})
			}
		}
	}
	if d.senderID == "" || d.receiverID == "" || len(d.dests) == 0 {
		t.Fatalf("%s: no sender, receiver or destination of %s", file, service)
	}
	return demo
}

// demoSubscriberConfig writes the subscriber's configuration for every
// demo destination: pickup over NATS from the durable, the Submission API
// through the load balancer, delivery into the Fachverfahren.
func demoSubscriberConfig(t *testing.T, c *cluster.Cluster, demo demoFile, d *deployment) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "mode: nats\nnats:\n  url: %s\n  durable: %s\n", c.NATSURL, durable)
	fmt.Fprintf(&b, "http:\n  baseUrl: %s\n  clientId: %s\n  clientSecret: %s\n", c.PublicURL, d.receiverID, d.receiverSecret)
	b.WriteString("concurrency: 8\ndestinations:\n")
	for _, dest := range demo.Destinations {
		fmt.Fprintf(&b, "  - id: %s\n    encryptionKeys: [%s]\n    signingKey: %s\n", dest.DestinationID, dest.EncryptionKeyFile, dest.SigningKeyFile)
	}
	fmt.Fprintf(&b, "sink:\n  kind: http\n  http:\n    url: %s\n    timeout: 20s\n    maxAttempts: 5\n", d.fvURL)
	file := filepath.Join(t.TempDir(), "subscriber.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// testWriter logs the cluster's progress lines and the processes'
// unexpected exits; it stays silent once the test is over.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// dumpLogs logs the end of every process's log when the test failed.
func dumpLogs(t *testing.T, dir string) {
	if !t.Failed() {
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		t.Logf("%s, last lines:\n%s", filepath.Base(f), strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}

// killProxy forwards to one gateway and, when armed, runs a hook once a
// submit (PUT /v1/submissions/{id}) has been sent on to it, before its
// answer.
type killProxy struct {
	url     string
	mu      sync.Mutex
	hook    func(path string)
	outcome chan string // of the submit the hook ran for
}

func newKillProxy(t *testing.T, target string) *killProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &killProxy{outcome: make(chan string, 1)}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = p
	rp.ErrorLog = log.New(io.Discard, "", 0) // the gateway being down is the point
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *killProxy) onNextSubmit(hook func(path string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = hook
}

func (p *killProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	var hook func(string)
	if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/submissions/") && strings.Count(r.URL.Path, "/") == 3 {
		p.mu.Lock()
		hook, p.hook = p.hook, nil
		p.mu.Unlock()
	}
	if hook == nil {
		return http.DefaultTransport.RoundTrip(r)
	}
	// The gateway has the whole request when it was written; the hook
	// runs while it handles it.
	var once sync.Once
	fired := make(chan struct{})
	r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) {
			once.Do(func() {
				go func() {
					time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
					hook(r.URL.Path)
					close(fired)
				}()
			})
		},
	}))
	resp, err := http.DefaultTransport.RoundTrip(r)
	once.Do(func() { go func() { hook(r.URL.Path); close(fired) }() })
	<-fired
	if err != nil {
		p.outcome <- "the gateway died before answering: " + err.Error()
	} else {
		p.outcome <- "the gateway answered " + resp.Status + " before it died"
	}
	return resp, err
}
