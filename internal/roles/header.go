package roles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// MaxHeaderBytes bounds a request's line and header fields together.
const MaxHeaderBytes = 64 << 10

// plainHeaderTooLarge is the whole answer net/http writes straight to the
// connection, before any handler runs, when a request's line and header
// fields exceed the server's limit (net/http adds 4 KiB of slack).
const plainHeaderTooLarge = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large"

// headerTooLarge is the problem+json answer written in its place.
var headerTooLarge = func() []byte {
	body, err := json.Marshal(problem.HeaderTooLarge(MaxHeaderBytes))
	if err != nil {
		panic(err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
		http.StatusRequestHeaderFieldsTooLarge, http.StatusText(http.StatusRequestHeaderFieldsTooLarge), problem.ContentType, len(body))
	b.Write(body)
	return b.Bytes()
}()

// headerProblems is a listener whose connections answer an oversized
// request line or header with problem+json, as every other error is
// answered, instead of net/http's plain text. No handler sees such a
// request, so the answer can only be mended on the connection.
type headerProblems struct{ net.Listener }

// Accept wraps the accepted connection.
func (l headerProblems) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &headerConn{c}, nil
}

// headerConn replaces net/http's plain 431, which it writes whole in one
// call; every other write passes through.
type headerConn struct{ net.Conn }

func (c *headerConn) Write(p []byte) (int, error) {
	if len(p) == len(plainHeaderTooLarge) && string(p) == plainHeaderTooLarge {
		if _, err := c.Conn.Write(headerTooLarge); err != nil {
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
