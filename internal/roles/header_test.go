package roles

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// serve runs serveHTTP with h on a fresh local listener until the test
// ends and returns its address.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveHTTP(ctx, ln, h, 0, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// send writes raw as one request and reads the answer.
func send(t *testing.T, addr, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The server answers before it has read everything; what it leaves
	// unread does not matter.
	go func() { _, _ = io.WriteString(c, raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

// TestHeaderTooLargeIsProblem sends a request line of a mebibyte, and a
// header of many fields, which net/http refuses before any handler runs:
// the answer is a 431 problem+json like every other error. An ordinary
// request on the same server is answered by the handler.
func TestHeaderTooLargeIsProblem(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, plainHeaderTooLarge)
	}))
	for _, tt := range []struct{ name, raw string }{
		{"a 1 MiB request line", "GET /v2/routes?leikaKey=99108008000000&ars=" + strings.Repeat("0", 1<<20) + " HTTP/1.1\r\nHost: amtsbote\r\n\r\n"},
		{"header fields over the limit", "GET /v2/info HTTP/1.1\r\nHost: amtsbote\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("x", 1000)+"\r\n", 80) + "\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, addr, tt.raw)
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type %q", ct)
			}
			var p problem.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if p.Type != problem.TypeHeaderTooLarge || p.Status != http.StatusRequestHeaderFieldsTooLarge || p.Title == "" || !strings.Contains(p.Detail, "65536 bytes") {
				t.Errorf("problem %+v", p)
			}
		})
	}
	t.Run("an ordinary request, whose answer reads like net/http's 431", func(t *testing.T) {
		resp, body := send(t, addr, "GET /v2/info HTTP/1.1\r\nHost: amtsbote\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusOK || string(body) != plainHeaderTooLarge {
			t.Errorf("status %d, body %q", resp.StatusCode, body)
		}
	})
}

// TestMalformedRequestIsProblem sends requests net/http refuses before any
// handler runs: each answer is a problem+json with net/http's status and
// its reason, never what the client sent.
func TestMalformedRequestIsProblem(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tt := range []struct {
		name, raw string
		status    int
		detail    string
	}{
		{"a line feed inside a header value", "GET /v2/info HTTP/1.1\r\nHost: amtsbote\r\nX-Portal: a\rb\r\n\r\n", http.StatusBadRequest, "Bad Request"},
		{"a header name with a space", "GET /v2/info HTTP/1.1\r\nHost: amtsbote\r\nX Portal: secret-value\r\n\r\n", http.StatusBadRequest, "Bad Request"},
		{"no Host", "GET /v2/info HTTP/1.1\r\n\r\n", http.StatusBadRequest, "missing required Host header"},
		{"an unknown protocol version", "GET /v2/info HTTP/7.1\r\nHost: amtsbote\r\n\r\n", http.StatusHTTPVersionNotSupported, "unsupported protocol version"},
		{"an unknown transfer coding", "POST /v1/submissions HTTP/1.1\r\nHost: amtsbote\r\nTransfer-Encoding: rot13\r\n\r\n", http.StatusNotImplemented, "Unsupported transfer encoding"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, addr, tt.raw)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type %q: %s", ct, body)
			}
			var p problem.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if p.Type != problem.TypeInvalidRequest || p.Status != tt.status || !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("problem %+v, want its detail to say %q", p, tt.detail)
			}
			if strings.Contains(string(body), "secret-value") {
				t.Errorf("the answer repeats what the client sent: %s", body)
			}
		})
	}
	// The connection still serves a well-formed request.
	if resp, body := send(t, addr, "GET /v2/info HTTP/1.1\r\nHost: amtsbote\r\nConnection: close\r\n\r\n"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
}
