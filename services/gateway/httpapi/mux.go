package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtsbote/amtsbote/pkg/bus"
	pkgmetrics "github.com/amtsbote/amtsbote/pkg/metrics"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/tracing"
)

// metrics are the HTTP metrics. Labels are bounded: route is the
// mux pattern's path (never a raw path), method is HTTP's and code the
// status class ("2xx" … "5xx").
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "amtsbote_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status class.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "amtsbote_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
	}
	var err error
	if m.requests, err = Register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = Register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// Register registers c, or returns the collector registered before under
// the same name (a second gateway on the same registry shares the metrics).
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	return pkgmetrics.Register(reg, c)
}

// MetricsHandler serves reg's metrics in Prometheus's text format.
func MetricsHandler(reg *prometheus.Registry) http.Handler { return pkgmetrics.Handler(reg) }

// requestInfo travels in the request context so inner handlers can tell
// the access log who the caller was (SetSubject).
type requestInfo struct {
	subject string
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(infoKey{}).(*requestInfo)
	return ri
}

// statusWriter records the status and size of a response and moves the
// write deadline forward with every write.
type statusWriter struct {
	http.ResponseWriter
	status       int
	bytes        int64
	rc           *http.ResponseController
	writeTimeout time.Duration
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.rc != nil {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.writeTimeout))
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe logs every request once with fixed keys and records the metrics.
// Requests no route matches get a problem instead of the mux's text.
func (m *Mux) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{}
		// No answer is to be read as another media type than it says.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Everything the request causes carries its trace (or a new one).
		ctx := bus.ContextWithTraceparent(r.Context(), r.Header.Get("Traceparent"))
		_, pattern := m.ServeMux.Handler(r)
		if !canonical(r.URL.Path) {
			pattern = "" // the mux redirects to the canonical path
		}
		route := patternPath(pattern)
		if pattern == "" {
			route = "unmatched"
		}
		var span trace.Span
		if m.tracing {
			ctx, span = m.tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route),
					attribute.String("url.path", r.URL.Path)))
		}
		if !trace.SpanContextFromContext(ctx).IsValid() {
			// Tracing is off and the caller sent no trace: one is made up
			// all the same, so that everything the request causes shares it.
			ctx = bus.ContextWithNewTrace(ctx)
		}
		// The id an operator finds the request by in every process's log.
		w.Header().Set("X-Request-Id", trace.SpanContextFromContext(ctx).TraceID().String())
		r = r.WithContext(context.WithValue(ctx, infoKey{}, ri))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// Deferred so that a request cut off by a late panic is counted too.
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			elapsed := time.Since(start)
			if span != nil {
				span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
				if sw.status >= 500 {
					span.SetStatus(codes.Error, http.StatusText(sw.status))
				}
				span.End()
			}
			method := pkgmetrics.Method(r.Method)
			m.metrics.requests.WithLabelValues(route, method, pkgmetrics.StatusClass(sw.status)).Inc()
			m.metrics.duration.WithLabelValues(route, method).Observe(elapsed.Seconds())
			level := slog.LevelInfo
			if sw.status >= 500 {
				level = slog.LevelWarn
			}
			m.log.LogAttrs(r.Context(), level, "http request",
				slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
				slog.Int("status", sw.status), slog.Int64("bytes", sw.bytes), slog.Duration("duration", elapsed),
				slog.String("client_id", ri.subject), slog.String("remote", r.RemoteAddr))
		}()
		// Before any handler: the server's own wait for an unread body
		// after the answer is bounded by the same deadline.
		m.deadlines.limitBody(sw, r, m.streamed[pattern])
		if pattern == "" {
			m.serveUnmatched(sw, r)
			return
		}
		next.ServeHTTP(sw, r)
	})
}

// canonical reports whether p is as the mux cleans it: no "//", "." or
// ".." segments.
func canonical(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// serveUnmatched lets the mux decide between 404, 405 and a redirect, and
// answers 404 and 405 as problems.
func (m *Mux) serveUnmatched(w http.ResponseWriter, r *http.Request) {
	cw := &captureWriter{header: http.Header{}}
	m.ServeMux.ServeHTTP(cw, r)
	switch cw.status {
	case http.StatusNotFound:
		problem.Write(w, problem.NotFound("path", fmt.Sprintf("no resource at %s", r.URL.Path)))
	case http.StatusMethodNotAllowed:
		allow := cw.header.Get("Allow")
		w.Header().Set("Allow", allow)
		problem.Write(w, problem.MethodNotAllowed(r.Method, strings.Split(allow, ", ")...))
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// The canonical path (// or /./ cleaned away): the location alone,
		// without the mux's HTML, as no answer here is a page.
		w.Header().Set("Location", cw.header.Get("Location"))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(cw.status)
	default:
		for k, v := range cw.header {
			w.Header()[k] = v
		}
		w.WriteHeader(cw.status)
		_, _ = w.Write(cw.body)
	}
}

// captureWriter keeps what the mux's fallback handlers write.
type captureWriter struct {
	header http.Header
	status int
	body   []byte
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body = append(c.body, b...)
	return len(b), nil
}

// recoverPanic turns a panicking handler into a logged 500 problem.
func (m *Mux) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, _ := w.(*statusWriter)
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			m.log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "route", RouteOf(r),
				"err", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw != nil && sw.status != 0 {
				// The answer has begun; all that is left is to cut it off.
				panic(http.ErrAbortHandler)
			}
			problem.Write(w, problem.Internal())
		}()
		next.ServeHTTP(w, r)
	})
}

// patternPath drops the method from a mux pattern: "GET /v1/info" → "/v1/info".
func patternPath(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// RouteOf is the route label of a request the mux has matched.
func RouteOf(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return patternPath(r.Pattern)
}

// SetSubject tells the access log of r who the caller was, for handlers
// that authenticate a caller themselves (the token endpoint).
func SetSubject(r *http.Request, subject string) {
	if ri := infoFrom(r.Context()); ri != nil {
		ri.subject = subject
	}
}

// Mux is the gateway's ServeMux. It keeps the patterns registered on it,
// so that the routes can be held against schemas/openapi.yaml, and wraps
// every request in the access log, the metrics and panic recovery.
type Mux struct {
	*http.ServeMux
	patterns  []string
	streamed  map[string]bool
	deadlines Deadlines
	slots     chan struct{}
	slotWait  time.Duration
	metrics   *metrics
	log       *slog.Logger
	tracer    trace.Tracer
	tracing   bool // tracer records spans
}

// NewMux returns an empty Mux whose metrics go to reg.
func NewMux(reg prometheus.Registerer, log *slog.Logger) (*Mux, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Mux{
		ServeMux: http.NewServeMux(), streamed: make(map[string]bool),
		deadlines: Deadlines{}.withDefaults(), metrics: m, log: log, tracer: tracing.Tracer(nil),
	}, nil
}

// SetTracerProvider makes every request a server span of tp's traces,
// continuing the trace of the request's traceparent header. Call it
// before serving; without it no spans are recorded.
func (m *Mux) SetTracerProvider(tp trace.TracerProvider) {
	m.tracer, m.tracing = tracing.Tracer(tp), tracing.Records(tp)
}

// SetDeadlines sets the deadlines of request bodies and answers; zero
// fields take the defaults.
func (m *Mux) SetDeadlines(d Deadlines) { m.deadlines = d.withDefaults() }

// Handle registers h for pattern and records the pattern.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleStream registers h for a route whose body is streamed rather than
// read whole: it is held to Deadlines.UploadRate instead of Deadlines.Body.
func (m *Mux) HandleStream(pattern string, h http.Handler) {
	m.Handle(pattern, h)
	m.streamed[pattern] = true
}

// HandleFunc registers h for pattern and records the pattern.
func (m *Mux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.ServeMux.HandleFunc(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// Patterns returns the patterns registered, in registration order.
func (m *Mux) Patterns() []string { return slices.Clone(m.patterns) }

// SetInFlight bounds the requests served at once to n (0: no bound). One
// more waits up to wait for a slot and is then answered 503 with
// Retry-After, so that a burst far above capacity is refused quickly
// instead of queueing until clients time out and memory runs out. Health
// and metrics stay outside the bound.
func (m *Mux) SetInFlight(n int, wait time.Duration) {
	if n <= 0 {
		m.slots = nil
		return
	}
	m.slots, m.slotWait = make(chan struct{}, n), wait
}

// bounded admits a request when a slot is free (SetInFlight).
func (m *Mux) bounded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slots := m.slots
		if slots == nil || unbounded[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			t := time.NewTimer(m.slotWait)
			select {
			case slots <- struct{}{}:
				t.Stop()
			case <-t.C:
				w.Header().Set("Retry-After", "1")
				w.Header().Set("Connection", "close")
				problem.Write(w, problem.Unavailable(fmt.Sprintf("the server is serving %d requests at once, its bound; retry in a second", cap(slots))))
				return
			case <-r.Context().Done():
				return
			}
		}
		defer func() { <-slots }()
		next.ServeHTTP(w, r)
	})
}

// unbounded are the paths that answer whatever the load.
var unbounded = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// Handler returns the mux wrapped in the access log, the metrics, the
// in-flight bound and panic recovery.
func (m *Mux) Handler() http.Handler { return m.observe(m.bounded(m.recoverPanic(m.ServeMux))) }
