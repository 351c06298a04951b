package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// Defaults of Deadlines.
const (
	DefaultBodyTimeout  = 30 * time.Second
	DefaultUploadGrace  = 30 * time.Second
	DefaultUploadRate   = 16 << 10
	DefaultWriteTimeout = 60 * time.Second
)

// Deadlines bound how long a client may take to send a request body and
// to take an answer, so a client that sends nothing, or one byte now and
// then, cannot hold a connection and its goroutine. Zero fields take the
// defaults.
type Deadlines struct {
	// Body is the time a body read whole (JSON, forms, SETs) has to
	// arrive, counted from the end of the headers.
	Body time.Duration
	// UploadRate is the least average rate, in bytes per second, of a
	// streamed upload (HandleStream's routes) once UploadGrace has passed:
	// a large attachment has as long as it needs, a stalled one does not.
	UploadRate  int64
	UploadGrace time.Duration
	// Write is the longest one write of the answer may make no progress; a
	// large download is never cut as long as the client keeps reading.
	Write time.Duration
}

func (d Deadlines) withDefaults() Deadlines {
	if d.Body <= 0 {
		d.Body = DefaultBodyTimeout
	}
	if d.UploadRate <= 0 {
		d.UploadRate = DefaultUploadRate
	}
	if d.UploadGrace <= 0 {
		d.UploadGrace = DefaultUploadGrace
	}
	if d.Write <= 0 {
		d.Write = DefaultWriteTimeout
	}
	return d
}

// bodyDeadline sets the read deadline of the connection under a request
// body: fixed for a body read whole, moving with the bytes received for a
// streamed one. A read past it fails with a 408 problem.
type bodyDeadline struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	w     http.ResponseWriter
	start time.Time
	fixed time.Duration
	grace time.Duration
	rate  int64
	read  int64
	done  bool
}

func (b *bodyDeadline) deadline() time.Time {
	if b.rate > 0 {
		return b.start.Add(b.grace + time.Duration(float64(b.read)/float64(b.rate)*float64(time.Second)))
	}
	return b.start.Add(b.fixed)
}

func (b *bodyDeadline) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.read += int64(n)
	switch {
	case err == nil:
		if b.rate > 0 && n > 0 {
			_ = b.rc.SetReadDeadline(b.deadline())
		}
	case err == io.EOF:
		b.release()
	case errors.Is(err, os.ErrDeadlineExceeded):
		// What is left of the body cannot be read any more.
		b.w.Header().Set("Connection", "close")
		return n, b.timeout()
	}
	return n, err
}

func (b *bodyDeadline) timeout() *problem.Problem {
	if b.rate > 0 {
		return problem.RequestTimeout(fmt.Sprintf("the upload arrived slower than %d bytes per second (after %s); %d bytes came",
			b.rate, b.grace, b.read))
	}
	return problem.RequestTimeout(fmt.Sprintf("the request body did not arrive within %s; %d bytes came", b.fixed, b.read))
}

// release lifts the deadline once the body is read: it must not cut the
// server's wait for the next request, nor cancel the request's context
// while the answer is being written.
func (b *bodyDeadline) release() {
	if !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

func (b *bodyDeadline) Close() error { return b.body.Close() }

// limitBody puts r's body, if it has one, under the deadline of d for a
// streamed or a whole body, and sets w to push its write deadline forward
// with every write.
func (d Deadlines) limitBody(w *statusWriter, r *http.Request, streamed bool) {
	rc := http.NewResponseController(w.ResponseWriter)
	w.rc, w.writeTimeout = rc, d.Write
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	b := &bodyDeadline{body: r.Body, rc: rc, w: w, start: time.Now(), fixed: d.Body}
	if streamed {
		b.rate, b.grace = d.UploadRate, d.UploadGrace
	}
	if err := rc.SetReadDeadline(b.deadline()); err != nil {
		// A writer without deadlines (a test recorder) reads as before.
		return
	}
	r.Body = b
}
