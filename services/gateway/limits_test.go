package gateway_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/services/gateway"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// withLimits sets the gateway's limits.
func withLimits(l gateway.Limits) envOption {
	return func(c *gateway.Config) { c.Limits = l }
}

// rawRequest sends head (request line and headers, without the blank
// line) on a connection of its own, then feeds the body with send in the
// background, and reads the answer. The connection is returned open, for
// the caller to see whether the server closed it.
func (e *env) rawRequest(head string, send func(w io.Writer) error) (*http.Response, net.Conn) {
	e.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	// A safety net for a server that never answers; not an assertion on time.
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, head+"\r\nHost: amtsbote\r\n\r\n"); err != nil {
		e.t.Fatal(err)
	}
	if send != nil {
		go func() { _ = send(conn) }()
	}
	// The request as far as its line, for helpers that look at its path.
	method, rest, _ := strings.Cut(head, " ")
	target, _, _ := strings.Cut(rest, " ")
	req, err := http.NewRequest(method, e.srv.URL+target, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		e.t.Fatalf("read answer: %v", err)
	}
	return resp, conn
}

// trickle writes data n bytes at a time, one piece every every, until it
// is sent or the connection fails.
func trickle(data []byte, n int, every time.Duration) func(io.Writer) error {
	return func(w io.Writer) error {
		for len(data) > 0 {
			k := min(n, len(data))
			if _, err := w.Write(data[:k]); err != nil {
				return err
			}
			data = data[k:]
			time.Sleep(every)
		}
		return nil
	}
}

// wantClosed checks that the server closed conn after its answer.
func wantClosed(t *testing.T, conn net.Conn, resp *http.Response) {
	t.Helper()
	readAll(t, resp)
	buf := make([]byte, 1)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept the connection open")
		}
		return
	}
}

func TestBodyDeadline(t *testing.T) {
	e := newEnv(t, withLimits(gateway.Limits{Deadlines: httpapi.Deadlines{Body: 300 * time.Millisecond}}))
	form := "grant_type=client_credentials&client_id=a&client_secret=b"

	tests := []struct {
		name string
		head string
		send func(io.Writer) error
	}{
		{"announced body never sent", "POST /token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100", nil},
		{"one byte at a time", "POST /token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + strconv.Itoa(len(form)),
			trickle([]byte(form), 1, 100*time.Millisecond)},
		{"chunked body never ended", "POST /token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked",
			func(w io.Writer) error { _, err := io.WriteString(w, "5\r\ngrant\r\n"); return err }},
		{"JSON body of a route with a token", "POST /admin/v1/destinations HTTP/1.1\r\nAuthorization: Bearer " + e.adminToken() +
			"\r\nContent-Type: application/json\r\nContent-Length: 100", trickle([]byte(`{"destinationId":`), 1, 100*time.Millisecond)},
		{"body of a route that does not read it", "POST /v1/no/such/route HTTP/1.1\r\nContent-Length: 100", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, conn := e.rawRequest(tt.head, tt.send)
			if resp.StatusCode == http.StatusNotFound {
				// The unmatched route answers before the body; the server's
				// wait for the body it does not read must end all the same.
				wantClosed(t, conn, resp)
				return
			}
			body := readAll(t, resp)
			resp.Body = io.NopCloser(bytes.NewReader(body))
			wantProblem(t, resp, http.StatusRequestTimeout, problem.TypeRequestTimeout, "body")
			if !resp.Close {
				t.Error("the 408 does not say Connection: close")
			}
			resp.Body = io.NopCloser(bytes.NewReader(nil))
			wantClosed(t, conn, resp)
		})
	}
}

// TestStalledRequestsReleased opens many requests whose bodies never come
// and checks that each is answered 408 and its goroutines end.
func TestStalledRequestsReleased(t *testing.T) {
	e := newEnv(t, withLimits(gateway.Limits{Deadlines: httpapi.Deadlines{Body: 300 * time.Millisecond}}))
	base := runtime.NumGoroutine()
	const n = 200
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		if _, err := io.WriteString(conn, "POST /token HTTP/1.1\r\nHost: amtsbote\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				codes[i] = resp.StatusCode
				_, _ = io.Copy(io.Discard, resp.Body)
			}
			// Wait for the server to close its end.
			_, _ = io.Copy(io.Discard, conn)
			conn.Close()
		}()
	}
	wg.Wait()
	for i, c := range codes {
		// Past the public limit's burst the answer is 429, given before
		// reading the body: both release the connection.
		if c != http.StatusRequestTimeout && c != http.StatusTooManyRequests {
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > base+10 {
			return fmt.Errorf("%d goroutines, %d before the stalled requests", g, base)
		}
		return nil
	})
}

func TestUploadRate(t *testing.T) {
	e := newEnv(t, withLimits(gateway.Limits{Deadlines: httpapi.Deadlines{
		Body: 100 * time.Millisecond, UploadGrace: 300 * time.Millisecond, UploadRate: 10,
	}}))
	admin := e.adminToken()
	csv := []byte("leika_key,name\n" + leikaA + ",Gewerbeanzeige\n")
	head := "POST /admin/v1/import/leika HTTP/1.1\r\nAuthorization: Bearer " + admin +
		"\r\nContent-Type: text/csv\r\nContent-Length: " + strconv.Itoa(len(csv))

	// Well above the least rate but longer than a body read whole may take.
	resp, _ := e.rawRequest(head, trickle(csv, 8, 100*time.Millisecond))
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("steady upload: %d %s", resp.StatusCode, body)
	}

	// Below the least rate once the grace is over.
	resp, conn := e.rawRequest(head, trickle(csv, 1, 500*time.Millisecond))
	body := readAll(t, resp)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	p := wantProblem(t, resp, http.StatusRequestTimeout, problem.TypeRequestTimeout, "body")
	if !strings.Contains(p.Detail, "10 bytes per second") {
		t.Errorf("detail %q does not name the rate", p.Detail)
	}
	resp.Body = io.NopCloser(bytes.NewReader(nil))
	wantClosed(t, conn, resp)
}

func TestTokenBodyLimit(t *testing.T) {
	e := newEnv(t)
	id := "client-big"
	secret := e.client(id, false, "send:region:DE08")
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret},
		"padding": {strings.Repeat("x", 5000)}}.Encode()

	t.Run("announced", func(t *testing.T) {
		resp := e.postForm("/token", mustParse(t, form))
		wantProblem(t, resp, http.StatusRequestEntityTooLarge, problem.TypeBodyTooLarge, "body")
	})
	t.Run("chunked", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/token", io.MultiReader(strings.NewReader(form)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if len(req.TransferEncoding) == 0 && req.ContentLength > 0 {
			t.Fatal("the request was not chunked")
		}
		wantProblem(t, resp, http.StatusRequestEntityTooLarge, problem.TypeBodyTooLarge, "")
	})
	t.Run("within the limit", func(t *testing.T) {
		resp := e.postForm("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
		if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func mustParse(t *testing.T, form string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(form)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenFailureLimits(t *testing.T) {
	e := newEnv(t, withLimits(gateway.Limits{
		ClientFailures:  httpapi.Rate{PerSecond: 0.001, Burst: 5},
		AddressFailures: httpapi.Rate{PerSecond: 0.001, Burst: 12},
	}))
	victim := e.client("client-victim", false, "send:region:DE08")
	other := e.client("client-other", false, "send:region:DE08")
	grant := func(id, secret string) *http.Response {
		return e.postForm("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	}

	for i := range 5 {
		wantProblem(t, grant("client-victim", "wrong-"+strconv.Itoa(i)), http.StatusUnauthorized, problem.TypeUnauthorized, "")
	}
	for _, secret := range []string{"wrong-again", victim} {
		resp := grant("client-victim", secret)
		p := wantProblem(t, resp, http.StatusTooManyRequests, problem.TypeTooManyRequests, "client_id")
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
		// The RateLimit headers describe the lockout, not the public quota.
		if h := resp.Header; h.Get("RateLimit-Remaining") != "0" || h.Get("RateLimit-Reset") != h.Get("Retry-After") {
			t.Errorf("RateLimit-Remaining %q, -Reset %q with Retry-After %q; want 0 and the Retry-After",
				h.Get("RateLimit-Remaining"), h.Get("RateLimit-Reset"), h.Get("Retry-After"))
		}
		if h := resp.Header; h.Get("RateLimit-Limit") != "1" || h.Get("RateLimit-Policy") != "1;w=1000;burst=5" {
			t.Errorf("RateLimit-Limit %q, -Policy %q; want the client failures' 1 and 1;w=1000;burst=5", h.Get("RateLimit-Limit"), h.Get("RateLimit-Policy"))
		}
		if !strings.Contains(p.Detail, "client-victim") {
			t.Errorf("detail %q does not name the client id", p.Detail)
		}
		// Not RFC 6749's invalid_client: the right secret gets this too.
		if p.Extra["error"] != nil {
			t.Errorf("OAuth error %v in a lockout", p.Extra["error"])
		}
	}
	// Another client from the same address is not held up.
	if resp := grant("client-other", other); resp.StatusCode != http.StatusOK {
		t.Fatalf("other client: %d %s", resp.StatusCode, readAll(t, resp))
	}
	// Nor is the victim where it runs: client ids are not secret, so
	// failures from one address do not lock it out elsewhere.
	elsewhere := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
	}).DialContext}}
	defer elsewhere.CloseIdleConnections()
	resp, err := elsewhere.PostForm(e.srv.URL+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"client-victim"}, "client_secret": {victim}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("victim from another address: %d %s", resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
	// Guessing across client ids runs into the address's limit.
	for i := range 7 {
		wantProblem(t, grant("client-guess-"+strconv.Itoa(i), "x"), http.StatusUnauthorized, problem.TypeUnauthorized, "")
	}
	resp = grant("client-guess-8", "x")
	wantProblem(t, resp, http.StatusTooManyRequests, problem.TypeTooManyRequests, "")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

func TestTokenHashingBounded(t *testing.T) {
	e := newEnv(t, withLimits(gateway.Limits{Hashes: 1, HashWait: time.Millisecond}))
	const n = 20
	codes := make(chan *http.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.postForm("/token", url.Values{"grant_type": {"client_credentials"},
				"client_id": {"client-" + strconv.Itoa(i)}, "client_secret": {"wrong"}})
		}()
	}
	wg.Wait()
	close(codes)
	var unavailable int
	for resp := range codes {
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			readAll(t, resp)
		case http.StatusServiceUnavailable:
			unavailable++
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			wantProblem(t, resp, http.StatusServiceUnavailable, problem.TypeUnavailable, "")
		default:
			t.Errorf("status %d: %s", resp.StatusCode, readAll(t, resp))
		}
	}
	if unavailable == 0 {
		t.Error("twenty comparisons at once on one slot: none was refused")
	}
}

func TestPublicLimit(t *testing.T) {
	e := newEnv(t, withLimits(gateway.Limits{Public: httpapi.Rate{PerSecond: 0.001, Burst: 3}}))
	for _, path := range []string{"/v1/info", "/.well-known/jwks.json", "/healthz"} {
		if resp := e.do(http.MethodGet, path, "", "", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/v1/info", "/metrics", "/v2/info", "/.well-known/jwks.json"} {
		resp := e.do(http.MethodGet, path, "", "", nil)
		wantProblem(t, resp, http.StatusTooManyRequests, problem.TypeTooManyRequests, "")
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", path)
		}
	}
	resp := e.postForm("/token", url.Values{"grant_type": {"client_credentials"}})
	wantProblem(t, resp, http.StatusTooManyRequests, problem.TypeTooManyRequests, "")
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTokenFailureLimitsBehindAProxy: behind a trusted load balancer the
// failure limits count the clients X-Forwarded-For names, so failures
// from one client lock no other out.
func TestTokenFailureLimitsBehindAProxy(t *testing.T) {
	e := newEnv(t, withLimits(gateway.Limits{
		ClientFailures:  httpapi.Rate{PerSecond: 0.001, Burst: 5},
		AddressFailures: httpapi.Rate{PerSecond: 0.001, Burst: 12},
		TrustedProxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}))
	secret := e.client("client-victim", false, "send:region:DE08")
	grant := func(from, secret string) int {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/token", strings.NewReader(url.Values{
			"grant_type": {"client_credentials"}, "client_id": {"client-victim"}, "client_secret": {secret},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", from)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp.StatusCode
	}
	for i := range 13 {
		grant("203.0.113.9", "wrong-"+strconv.Itoa(i))
	}
	if code := grant("203.0.113.9", secret); code != http.StatusTooManyRequests {
		t.Errorf("the guessing client: %d, want 429", code)
	}
	if code := grant("198.51.100.7", secret); code != http.StatusOK {
		t.Errorf("the client itself, elsewhere behind the balancer: %d, want 200", code)
	}
}
