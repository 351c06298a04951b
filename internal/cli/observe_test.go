package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/services/ledger"
	"github.com/amtsbote/amtsbote/services/subscriber"
)

// TestMetricsLifecycle carries one submission through `amtsbote dev`
// (run in this process) from create to accept and holds /metrics to it:
// exactly one created, submitted, routed, picked up and accepted, in the
// Land of the destination's home region and nowhere else, one latency
// observation per stage pair, a resolution and the readiness checks.
// The scrape passes `promtool check metrics`, and every series the
// shipped dashboard and alert rules query is one the processes export.
func TestMetricsLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs dev with its RSA-4096 demo keys")
	}
	p := startDev(t, t.TempDir())
	d := p.demo
	dest := d.Destinations[0]
	land := metrics.Land(dest.Region)
	if land == metrics.Unknown {
		t.Fatalf("demo destination %s has no Land in region %s", dest.DestinationID, dest.Region)
	}

	eventually(t, time.Minute, func() error {
		resp, err := http.Get(d.BaseURL + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", resp.StatusCode, body)
		}
		var r struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		for _, c := range []string{"nats", "store", "routes"} {
			if r.Checks[c] != "ok" {
				return fmt.Errorf("/readyz check %s is %q: %s", c, r.Checks[c], body)
			}
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ring, sigKey := destinationKeys(t, dest)
	sender := newActor(t, d, "sender", http.DefaultTransport)
	receiver := newActor(t, d, "receiver", http.DefaultTransport).Receiver()
	receipt, err := sender.Sender().Submit(ctx, client.Submission{
		DestinationID: dest.DestinationID,
		ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Gewerbeanmeldung"},
		Region:        dest.Region,
		Data:          []byte(`{"gewerbe":{"art":"Anmeldung","betrieb":"Bäckerei Beispiel"}}`),
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
	waitState(t, sender.Sender(), receipt, client.StateAccepted)

	// The ledger counts as it projects; the sender saw the accept in the
	// event log, which the ledger may not have projected yet.
	var raw []byte
	var fams map[string]*dto.MetricFamily
	eventually(t, time.Minute, func() error {
		raw, fams = scrape(t, d.BaseURL+"/metrics")
		if n := value(fams, "amtsbote_submissions_total", map[string]string{"stage": ledger.StageAccepted, "land": land}); n != 1 {
			return fmt.Errorf("accepted in %s: %v", land, n)
		}
		return nil
	})

	want := map[string]float64{
		ledger.StageCreated: 1, ledger.StageSubmitted: 1, ledger.StageRouted: 1,
		ledger.StagePickedUp: 1, ledger.StageAccepted: 1,
	}
	for _, stage := range ledger.Stages {
		for _, l := range metrics.Lands {
			got := value(fams, "amtsbote_submissions_total", map[string]string{"stage": stage, "land": l})
			w := 0.0
			if l == land {
				w = want[stage]
			}
			if got != w {
				t.Errorf("amtsbote_submissions_total{stage=%q,land=%q} = %v, want %v", stage, l, got, w)
			}
		}
	}
	for _, stage := range []string{ledger.SubmitToRouted, ledger.RoutedToPickedUp, ledger.SubmitToAccepted} {
		if n := histogramCount(fams, "amtsbote_stage_duration_seconds", map[string]string{"stage": stage}); n != 1 {
			t.Errorf("amtsbote_stage_duration_seconds{stage=%q} observed %d times, want 1", stage, n)
		}
	}
	if n := value(fams, "amtsbote_route_resolutions_total", nil); n < 1 {
		t.Errorf("no route resolution counted, want the router's")
	}
	if n := value(fams, "amtsbote_route_resolutions_total", map[string]string{"level": "none"}); n != 0 {
		t.Errorf("%v resolutions found no destination, want 0", n)
	}
	if n := value(fams, "amtsbote_http_requests_total", map[string]string{"code": "2xx", "route": "/v1/submissions"}); n < 1 {
		t.Errorf("no 2xx on /v1/submissions counted")
	}
	for _, c := range []string{"nats", "store", "routes"} {
		if v := value(fams, "amtsbote_ready", map[string]string{"check": c}); v != 1 {
			t.Errorf("amtsbote_ready{check=%q} = %v, want 1", c, v)
		}
	}
	// create, submit, notify (the fetch) and accept.
	if v := value(fams, "amtsbote_jetstream_stream_messages", map[string]string{"stream": "EVENTS"}); v != 4 {
		t.Errorf("EVENTS holds %v messages, want the lifecycle's 4", v)
	}

	t.Run("promtool check metrics", func(t *testing.T) { promtoolCheckMetrics(t, raw) })
	t.Run("dashboard and alerts name exported series", func(t *testing.T) { checkQueriedSeries(t, fams) })
}

// scrape reads url in the Prometheus text format.
func scrape(t *testing.T, url string) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return raw, fams
}

// matches reports whether m carries every label of want.
func matches(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// value sums the counters or gauges of name whose labels match want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		if matches(m, want) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// histogramCount sums the observation counts of the histograms of name
// whose labels match want.
func histogramCount(fams map[string]*dto.MetricFamily, name string, want map[string]string) uint64 {
	var n uint64
	for _, m := range fams[name].GetMetric() {
		if matches(m, want) {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// promtoolCheckMetrics runs `promtool check metrics` on a scrape; it
// skips where promtool is absent, unless CI is set (.ci/run installs it).
func promtoolCheckMetrics(t *testing.T, raw []byte) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found; .ci/run installs Debian's prometheus package")
		}
		t.Skip("promtool not found; install Debian's prometheus package to run this check")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// seriesName finds the series names in a PromQL expression.
var seriesName = regexp.MustCompile(`\bamtsbote_[a-z0-9_]+`)

// checkQueriedSeries holds every amtsbote_ series the Grafana dashboard
// and the alert rules name against what the processes export: a dev
// scrape, and the sink deliveries and handled submissions of subscribers,
// which dev does not run, as their constructors in pkg/metrics register
// them.
func checkQueriedSeries(t *testing.T, fams map[string]*dto.MetricFamily) {
	exported := map[string]bool{}
	add := func(fams map[string]*dto.MetricFamily) {
		for name, f := range fams {
			exported[name] = true
			if f.GetType() == dto.MetricType_HISTOGRAM {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					exported[name+s] = true
				}
			}
		}
	}
	add(fams)
	reg := metrics.NewRegistry()
	if _, err := metrics.NewSinks(reg, "directory", "http", "postgres"); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.NewHandled(reg, subscriber.Outcomes...); err != nil {
		t.Fatal(err)
	}
	others, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	om := map[string]*dto.MetricFamily{}
	for _, f := range others {
		om[f.GetName()] = f
	}
	add(om)

	root := filepath.Join("..", "..", "deploy")
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "grafana", "dashboards", "amtsbote.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	queried := map[string][]string{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range seriesName.FindAllString(tg.Expr, -1) {
				queried[n] = append(queried[n], "dashboard panel "+p.Title)
			}
		}
	}
	rules, err := os.ReadFile(filepath.Join(root, "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.Contains(line, "summary:") || strings.Contains(line, "description:") || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, n := range seriesName.FindAllString(line, -1) {
			queried[n] = append(queried[n], "alerts.yml")
		}
	}
	if len(queried) < 10 {
		t.Fatalf("found only %d series in the dashboard and alerts", len(queried))
	}
	names := make([]string, 0, len(queried))
	for n := range queried {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !exported[n] {
			t.Errorf("%s, queried by %s, is not exported", n, strings.Join(slices.Compact(queried[n]), ", "))
		}
	}
}

// span is what the test collector keeps of an exported span.
type span struct {
	name, trace, id, parent string
	kind                    tracepb.Span_SpanKind
}

// collector is an OTLP/HTTP trace receiver: it keeps the spans exported
// to /v1/traces.
type collector struct {
	mu    sync.Mutex
	spans []span
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, span{
					name: s.GetName(), kind: s.GetKind(),
					trace: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
					parent: hex.EncodeToString(s.GetParentSpanId()),
				})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *collector) all() []span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans)
}

// TestTraceAcrossRoles runs dev with an OTLP endpoint (a collector in
// this test) and submits: the gateway's HTTP span of the submit, its
// publish to INGRESS, the router's consume of it, the router's publish
// to INBOX and the ledger's consume of that are one trace, each span the
// child of the one before, linked through the CloudEvents traceparent.
func TestTraceAcrossRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs dev with its RSA-4096 demo keys")
	}
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	p := startDev(t, t.TempDir(), "--otlp-endpoint", srv.URL)
	d := p.demo
	dest := d.Destinations[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sender := newActor(t, d, "sender", http.DefaultTransport)
	receipt, err := sender.Sender().Submit(ctx, client.Submission{
		DestinationID: dest.DestinationID,
		ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Gewerbeanmeldung"},
		Region:        dest.Region,
		Data:          []byte(`{"gewerbe":{"art":"Anmeldung"}}`),
	})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	chain := []struct {
		name string
		kind tracepb.Span_SpanKind
	}{
		{"PUT /v1/submissions/{submissionId}", tracepb.Span_SPAN_KIND_SERVER},
		{"publish ab.ingress", tracepb.Span_SPAN_KIND_PRODUCER},
		{"consume INGRESS", tracepb.Span_SPAN_KIND_CONSUMER},
		{"publish ab.inbox", tracepb.Span_SPAN_KIND_PRODUCER},
		{"consume INBOX", tracepb.Span_SPAN_KIND_CONSUMER},
	}
	// Spans leave in batches every few seconds.
	eventually(t, time.Minute, func() error {
		spans := col.all()
		byID := map[string]span{}
		for _, s := range spans {
			byID[s.id] = s
		}
		var leaf *span
		for i := range spans {
			s := spans[i]
			if s.name == chain[len(chain)-1].name && s.kind == chain[len(chain)-1].kind {
				leaf = &s
				break
			}
		}
		if leaf == nil {
			return fmt.Errorf("no %s span among %d", chain[len(chain)-1].name, len(spans))
		}
		cur := *leaf
		for i := len(chain) - 1; i >= 0; i-- {
			if cur.name != chain[i].name || cur.kind != chain[i].kind {
				return fmt.Errorf("span %d of the chain is %q (%s), want %q (%s)", i, cur.name, cur.kind, chain[i].name, chain[i].kind)
			}
			if cur.trace != leaf.trace {
				return fmt.Errorf("%s is of trace %s, the ledger's consume of %s", cur.name, cur.trace, leaf.trace)
			}
			if i == 0 {
				break
			}
			parent, ok := byID[cur.parent]
			if !ok {
				return fmt.Errorf("parent %s of %s not exported (yet)", cur.parent, cur.name)
			}
			cur = parent
		}
		return nil
	})
	t.Logf("submission %s: one trace from the submit to the ledger", receipt.SubmissionID)
}

// TestServeRoleHealth runs `serve --target=router`, a process without the
// gateway: it serves /healthz, /readyz and /metrics on its listener, and
// turns not ready, naming NATS, when its NATS server goes away.
func TestServeRoleHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("generates an RSA-4096 signing key")
	}
	dbURL, keyFile, node := serveEnv(t)
	port := strconv.Itoa(freePort(t))
	base := "http://127.0.0.1:" + port
	startServe(t, "--target=router", "--listen", "127.0.0.1:"+port, "--nats-url", node.URL, "--database-url", dbURL,
		"--signing-key", keyFile, "--public-url", "https://amtsbote.example", "--log-level", "error")

	get := func(path string) (int, string, []byte) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	if code, _, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	eventually(t, 30*time.Second, func() error {
		if code, _, body := get("/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", code, body)
		}
		return nil
	})
	_, fams := scrape(t, base+"/metrics")
	for _, c := range []string{"nats", "store", "routes"} {
		if v := value(fams, "amtsbote_ready", map[string]string{"check": c}); v != 1 {
			t.Errorf("amtsbote_ready{check=%q} = %v, want 1", c, v)
		}
	}
	if _, ok := fams["amtsbote_route_resolutions_total"]; !ok {
		t.Error("the router's process does not export amtsbote_route_resolutions_total")
	}

	node.Shutdown()
	eventually(t, 30*time.Second, func() error {
		code, ctype, body := get("/readyz")
		if code != http.StatusServiceUnavailable || ctype != "application/problem+json" {
			return fmt.Errorf("/readyz %d %s without NATS: %s", code, ctype, body)
		}
		if !strings.Contains(string(body), "nats") {
			return fmt.Errorf("/readyz does not name nats: %s", body)
		}
		return nil
	})
	if code, _, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d without NATS, want 200: the process lives", code)
	}
	// Back, so that the process drains and stops cleanly.
	node.Restart(t)
}

// TestServeMetricsListen: with --metrics-listen the gateway's /metrics is
// served there, with health, and not beside the APIs the public reaches.
func TestServeMetricsListen(t *testing.T) {
	if testing.Short() {
		t.Skip("generates an RSA-4096 signing key")
	}
	dbURL, keyFile, node := serveEnv(t)
	public, private := "http://127.0.0.1:"+strconv.Itoa(freePort(t)), "http://127.0.0.1:"+strconv.Itoa(freePort(t))
	startServe(t, "--target=gateway", "--listen", strings.TrimPrefix(public, "http://"), "--metrics-listen", strings.TrimPrefix(private, "http://"),
		"--nats-url", node.URL, "--database-url", dbURL, "--signing-key", keyFile, "--public-url", "https://amtsbote.example", "--log-level", "error")

	status := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, 30*time.Second, func() error {
		if code := status(private + "/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz on the metrics listener: %d", code)
		}
		return nil
	})
	if code := status(public + "/v1/info"); code != http.StatusOK {
		t.Errorf("/v1/info on the public listener: %d", code)
	}
	if code := status(public + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the public listener: %d, want 404", code)
	}
	if _, fams := scrape(t, private+"/metrics"); fams["amtsbote_http_requests_total"] == nil || fams["amtsbote_ready"] == nil {
		t.Error("the metrics listener serves no gateway metrics")
	}
	_, err := parseServeConfig([]string{"--target=router", "--metrics-listen", ":9090"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--metrics-listen needs the gateway") {
		t.Errorf("--metrics-listen without the gateway: %v", err)
	}
}

// serveEnv is what serve needs besides its flags: a fresh PostgreSQL
// schema, a signing key file and a NATS server.
func serveEnv(t *testing.T) (dbURL, keyFile string, node *bustest.Node) {
	t.Helper()
	dbURL = freshSchema(t)
	keyFile = filepath.Join(t.TempDir(), "amtsbote.signing.jwk.json")
	if _, _, err := loadOrCreateKey(keyFile, jose.Signing, "amtsbote-test", "Amtsbote test"); err != nil {
		t.Fatal(err)
	}
	return dbURL, keyFile, bustest.Server(t)
}
