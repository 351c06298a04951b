package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/netguard"
)

// tunnel is an HTTPS proxy that connects every CONNECT to backend, and
// counts them.
func tunnel(t *testing.T, backend string) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		n.Add(1)
		up, err := net.Dial("tcp", backend)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() {
			_, _ = io.Copy(up, buf)
			up.Close()
		}()
		_, _ = io.Copy(conn, up)
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestGuardedTransportProxies(t *testing.T) {
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer backend.Close()
	proxy, connects := tunnel(t, backend.Listener.Addr().String())
	proxyURL, _ := url.Parse(proxy.URL)

	post := func(target string) error {
		tr, via := guardedTransport(nil)
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		u, _ := url.Parse(target)
		req, _ := http.NewRequestWithContext(via(context.Background(), u), http.MethodPost, target, nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}

	t.Run("through the https proxy, named without a scheme", func(t *testing.T) {
		t.Setenv("HTTPS_PROXY", proxyURL.Host)
		t.Setenv("HTTP_PROXY", "")
		t.Setenv("NO_PROXY", "")
		before := connects.Load()
		if err := post("https://callback.example/cb"); err != nil {
			t.Fatalf("post through the proxy: %v", err)
		}
		if connects.Load() != before+1 {
			t.Fatal("the proxy saw no CONNECT")
		}
	})
	t.Run("to the https proxy's address directly", func(t *testing.T) {
		t.Setenv("HTTPS_PROXY", proxy.URL)
		t.Setenv("HTTP_PROXY", "")
		t.Setenv("NO_PROXY", proxyURL.Hostname())
		if err := post("https://" + proxyURL.Host + "/cb"); !errors.Is(err, netguard.ErrNotPublic) {
			t.Fatalf("post: %v, want %v", err, netguard.ErrNotPublic)
		}
	})
	t.Run("to the http proxy's address", func(t *testing.T) {
		// Callbacks are https: HTTP_PROXY is never their proxy, and its
		// address is no exception.
		t.Setenv("HTTPS_PROXY", "")
		t.Setenv("HTTP_PROXY", "http://"+backend.Listener.Addr().String())
		t.Setenv("NO_PROXY", "")
		if err := post(backend.URL + "/cb"); !errors.Is(err, netguard.ErrNotPublic) {
			t.Fatalf("post: %v, want %v", err, netguard.ErrNotPublic)
		}
	})
}
