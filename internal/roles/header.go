package roles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// MaxHeaderBytes bounds a request's line and header fields together.
const MaxHeaderBytes = 64 << 10

// plainHeaderTooLarge is the whole answer net/http writes straight to the
// connection, before any handler runs, when a request's line and header
// fields exceed the server's limit (net/http adds 4 KiB of slack).
const plainHeaderTooLarge = "HTTP/1.1 431 Request Header Fields Too Large" + plainErrorHeaders + "431 Request Header Fields Too Large"

// plainErrorHeaders follow the status line of every answer net/http writes
// itself, in one call, to a request it could not read: a malformed request
// line or header field (CR or LF in a value, no Host), an unsupported
// protocol version or transfer coding, an oversized header. An answer of a
// handler always carries a Date field there.
const plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// headerTooLarge is the problem+json answer written in place of the 431.
var headerTooLarge = answer(problem.HeaderTooLarge(MaxHeaderBytes))

// answer is p as a whole HTTP/1.1 answer that closes the connection.
func answer(p *problem.Problem) []byte {
	body, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
		p.Status, http.StatusText(p.Status), problem.ContentType, len(body))
	b.Write(body)
	return b.Bytes()
}

// problemFor returns the problem+json answer for one of net/http's plain
// answers p, or nil when p is none. Its text is net/http's own, never
// what the client sent.
func problemFor(p []byte) []byte {
	const statusLine = len("HTTP/1.1 400 ")
	if len(p) < statusLine || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return nil
	}
	end := bytes.Index(p[:min(len(p), 256)], []byte("\r\n"))
	if end < statusLine || !bytes.HasPrefix(p[end:], []byte(plainErrorHeaders)) {
		return nil
	}
	status, err := strconv.Atoi(string(p[9:12]))
	if err != nil || status < 400 || status > 599 {
		return nil
	}
	if status == http.StatusRequestHeaderFieldsTooLarge {
		return headerTooLarge
	}
	text := string(p[end+len(plainErrorHeaders):])
	if !utf8.ValidString(text) || len(text) > 200 {
		text = http.StatusText(status)
	}
	return answer(problem.New(problem.TypeInvalidRequest, http.StatusText(status), status, "",
		"the request could not be read as HTTP/1.1: "+text))
}

// headerProblems is a listener whose connections answer a request that
// net/http refuses before any handler sees it (an oversized or malformed
// request line or header) with problem+json, as every other error is
// answered, instead of net/http's plain text. The answer can only be
// mended on the connection.
type headerProblems struct{ net.Listener }

// Accept wraps the accepted connection.
func (l headerProblems) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &headerConn{c}, nil
}

// headerConn replaces net/http's plain answers, which it writes whole in
// one call; every other write passes through.
type headerConn struct{ net.Conn }

func (c *headerConn) Write(p []byte) (int, error) {
	if a := problemFor(p); a != nil {
		if _, err := c.Conn.Write(a); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// ReadFrom keeps the connection's own copy path (sendfile, splice).
func (c *headerConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

// CloseWrite lets net/http half-close before it hangs up, so that the
// client reads the 431 rather than a reset.
func (c *headerConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
