package cluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"
)

// front is the load balancer in front of the gateways: round robin, and a
// backend that refuses connections is skipped for a few seconds. It stands
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

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := uint64(len(f.backends))
	start := f.next.Add(1)
	now := time.Now().UnixNano()
	for i := range n {
		b := f.backends[(start+i)%n]
		if b.downUntil.Load() <= now {
			b.proxy.ServeHTTP(w, r)
			return
		}
	}
	f.backends[start%n].proxy.ServeHTTP(w, r)
}

func (f *front) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
}
