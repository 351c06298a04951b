package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"
)

// front is the load balancer in front of the gateways: round robin; a
// request whose gateway refuses the connection (nothing was sent) goes to
// the next one, and that gateway is skipped for a few seconds. It stands
// in for the one an operator puts in front of the gateways.
type front struct {
	srv      *http.Server
	backends []*backend
	next     atomic.Uint64
}

type backend struct {
	url       *url.URL
	proxy     *httputil.ReverseProxy
	downUntil atomic.Int64 // unix nanoseconds
}

func startFront(addr string, targets []string) (*front, error) {
	f := &front{}
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			return nil, err
		}
		b := &backend{url: u}
		b.proxy = &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(u)
				r.Out.Host = r.In.Host
				r.SetXForwarded()
			},
			// Streams uploads and downloads as they come.
			FlushInterval: -1,
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				var op *net.OpError
				if errors.As(err, &op) && op.Op == "dial" {
					b.downUntil.Store(time.Now().Add(3 * time.Second).UnixNano())
					if t, ok := r.Context().Value(tryKey{}).(*try); ok && !t.last {
						t.refused = true // the caller asks the next gateway
						return
					}
				}
				w.Header().Set("Content-Type", "application/problem+json")
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = w.Write([]byte(`{"type":"about:blank","title":"Bad Gateway","status":502,"detail":"the gateway behind the load balancer did not answer"}`))
			},
		}
		f.backends = append(f.backends, b)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// try is one attempt of a request at a gateway; refused says that the
// gateway refused the connection, last that no other is left to ask.
type try struct{ refused, last bool }

type tryKey struct{}

// keepOpen is a request body whose Close leaves it open.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := uint64(len(f.backends))
	start := f.next.Add(1)
	now := time.Now().UnixNano()
	// The gateways not known to be down first, then the others.
	order := make([]*backend, 0, n)
	for i := range n {
		if b := f.backends[(start+i)%n]; b.downUntil.Load() <= now {
			order = append(order, b)
		}
	}
	for i := range n {
		if b := f.backends[(start+i)%n]; b.downUntil.Load() > now {
			order = append(order, b)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		// A transport closes the body when its dial fails, before it read
		// any of it; the next gateway still gets it. The server closes it.
		r.Body = keepOpen{r.Body}
	}
	for i, b := range order {
		t := &try{last: i == len(order)-1}
		b.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tryKey{}, t)))
		if !t.refused {
			return
		}
	}
}

func (f *front) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
}
