package clustertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
	"github.com/amtsbote/amtsbote/services/ledger"
)

// TestDatabaseOutage cuts the ledger's way to PostgreSQL (a TCP proxy in
// the test, its listener and connections closed) while submissions go on
// through a gateway whose own connection stays, then restores it. The
// ledger falls behind on EVENTS meanwhile and its /readyz reports the store
// failing; afterwards it is ready again and catches up, and every
// submission the API accepted reaches the Fachverfahren exactly once and
// ends accepted, its events once each in EVENTS and in the store.
func TestDatabaseOutage(t *testing.T) {
	workers, pause, progress, outage := 2, 700*time.Millisecond, 5, 15*time.Second
	if testing.Short() {
		workers, pause, progress, outage = 2, time.Second, 3, 8*time.Second
	}
	dbURL := flowtest.FreshSchema(t)
	ctx := context.Background()
	direct, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = direct.Close() })
	proxy := startProxy(t, dbURL)
	viaProxy, err := postgres.Open(ctx, proxy.url(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = viaProxy.Close() })

	d := newDeployment(t, direct, 4)
	gw := d.startRoles(t, roles.Roles{Gateway: true, Signer: true, Router: true})
	lg := d.startRoles(t, roles.Roles{Ledger: true, Store: viaProxy})
	d.startSubscriber(t, gw.URL)
	flowtest.Eventually(t, 30*time.Second, func() error { return ready(lg.URL, true) })

	l := d.startLoad(t, workers, pause, gw.URL)
	l.waitProgress(t, progress, 2*time.Minute)

	w := window{name: "PostgreSQL cut off from the ledger", start: time.Now()}
	proxy.cut()
	flowtest.Eventually(t, 30*time.Second, func() error { return ready(lg.URL, false) })
	// Submissions go on; the ledger's EVENTS consumer falls behind.
	base := l.accepted()
	flowtest.Eventually(t, 2*time.Minute, func() error {
		if n := l.accepted(); n < base+progress {
			return fmt.Errorf("%d submissions accepted by the API during the outage, want %d", n-base, progress)
		}
		if p := ledgerPending(t, d.admin); p == 0 {
			return fmt.Errorf("the ledger has nothing pending on EVENTS")
		}
		return nil
	})
	for time.Since(w.start) < outage {
		if err := ready(lg.URL, false); err != nil {
			t.Fatalf("during the outage: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	behind := ledgerPending(t, d.admin)
	proxy.restore(t)
	w.end = time.Now()
	t.Logf("the ledger was %d EVENTS messages behind after %s without PostgreSQL", behind, w.end.Sub(w.start).Round(time.Millisecond))
	flowtest.Eventually(t, time.Minute, func() error { return ready(lg.URL, true) })
	l.waitProgress(t, progress, 2*time.Minute)
	l.verify(t, gw.URL, 2*time.Minute, w)
	flowtest.Eventually(t, time.Minute, func() error {
		if p := ledgerPending(t, d.admin); p != 0 {
			return fmt.Errorf("the ledger has %d EVENTS messages pending", p)
		}
		return nil
	})
}

// ledgerPending returns what the ledger's EVENTS consumer has yet to settle.
func ledgerPending(t *testing.T, b *bus.Bus) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.JetStream().Consumer(ctx, bus.StreamEvents, ledger.DurableEvents)
	if err != nil {
		t.Fatalf("ledger consumer: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("ledger consumer info: %v", err)
	}
	return info.NumPending + uint64(info.NumAckPending)
}

// ready returns nil when baseURL's /readyz answers as want says: 200, or
// 503 naming the store check failing.
func ready(baseURL string, want bool) error {
	resp, err := http.Get(baseURL + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return fmt.Errorf("/readyz %d: %s", resp.StatusCode, raw)
	}
	switch {
	case want && (resp.StatusCode != http.StatusOK || body.Checks["store"] != "ok"):
		return fmt.Errorf("/readyz %d, want 200: %s", resp.StatusCode, raw)
	case !want && (resp.StatusCode != http.StatusServiceUnavailable || body.Checks["store"] != "failing"):
		return fmt.Errorf("/readyz %d, want 503 with the store failing: %s", resp.StatusCode, raw)
	}
	return nil
}

// proxy forwards TCP connections to PostgreSQL until cut.
type proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, dbURL string) *proxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	p := &proxy{target: host, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

// url returns dbURL with the proxy in place of the server.
func (p *proxy) url(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.addr
	return u.String()
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					_, _ = io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				}()
			}
		}
	}()
}

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens again on the same address.
func (p *proxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
