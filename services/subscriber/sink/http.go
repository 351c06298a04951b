package sink

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults of an HTTP sink.
const (
	DefaultHTTPTimeout     = time.Minute
	DefaultHTTPMaxAttempts = 8
	DefaultHTTPMaxElapsed  = 5 * time.Minute
	DefaultHTTPBaseDelay   = 500 * time.Millisecond
	DefaultHTTPMaxDelay    = 30 * time.Second
	// IdempotencyKeyHeader carries the submission id on every request.
	IdempotencyKeyHeader = "Idempotency-Key"
	// maxSnippet bounds the part of a refusal's body an error quotes.
	maxSnippet = 512
	// maxRetryAfter bounds a Retry-After the sink is willing to read.
	maxRetryAfter = 24 * time.Hour
)

// HTTPConfig configures an HTTP sink.
type HTTPConfig struct {
	// URL receives a POST per submission: absolute http or https, with no
	// credentials (send them in Header).
	URL string
	// Header is sent with every request, e.g. Authorization. It must not
	// set Content-Type, Content-Length, Transfer-Encoding or
	// Idempotency-Key.
	Header http.Header
	// Timeout bounds one request, the upload of its attachments included;
	// DefaultHTTPTimeout when zero.
	Timeout time.Duration
	// MaxAttempts bounds the requests of one Deliver;
	// DefaultHTTPMaxAttempts when zero.
	MaxAttempts int
	// MaxElapsed bounds the time one Deliver spends on attempts and the
	// waits between them; DefaultHTTPMaxElapsed when zero.
	MaxElapsed time.Duration
	// BaseDelay and MaxDelay shape the backoff between attempts: before
	// attempt n+1 the sink waits a random time up to
	// min(MaxDelay, BaseDelay·2^(n-1)), or as long as Retry-After asks.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Transport makes the requests; a clone of http.DefaultTransport
	// when nil.
	Transport http.RoundTripper
}

// StatusError is the Fachverfahren's answer when it is not a success.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Snippet is the start of the answer's body, for the log.
	Snippet string
	// Location is the target of a redirect, which the sink never follows.
	Location string
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := "fachverfahren answered " + strconv.Itoa(e.Code) + " " + http.StatusText(e.Code)
	if e.Location != "" {
		msg += ", a redirect to " + e.Location + " that is not followed (configure the final URL)"
	}
	if e.Snippet != "" {
		msg += ": " + e.Snippet
	}
	return msg
}

// HTTP is a Sink that posts each submission to a Fachverfahren as one
// JSON document (Content-Type application/json) with the header
// Idempotency-Key set to the submission id; the Fachverfahren must store
// a key's submission once and answer a repeated key with success. The
// body, whose attachments are streamed into it, is:
//
//	{
//	  "submissionId": "…", "caseId": "…", "destinationId": "…",
//	  "serviceIdentifier": "urn:de:fim:leika:leistung:…",
//	  "metadata": { the decrypted metadata },
//	  "dataMimeType": "application/json",  (without data: these three are absent)
//	  "dataEncoding": "utf-8",             ("base64" when the data is no UTF-8 text)
//	  "data": "the data document as a string, or its base64",
//	  "attachments": [
//	    {"id": "…", "filename": "name from Filenames", "mimeType": "…",
//	     "content": "base64 (standard, padded)", "size": bytes}
//	  ]
//	}
//
// Answers: 2xx is success. 408, 409 (the key is being processed), 425,
// 429 and 5xx, a timeout and a network error are retried with
// exponential backoff and full jitter, honouring Retry-After, up to
// MaxAttempts requests or MaxElapsed; then Deliver returns a transient
// error. 401, 403, 404 and 3xx, credentials or an address an operator
// mends, are a transient error at once. Any other answer (400, 410, 413,
// 415, 422, …) is the Fachverfahren's refusal of the submission, a
// permanent *StatusError. Redirects are never followed: a POST carrying a
// submission goes only to the configured URL, and a 3xx's error names its
// target.
type HTTP struct {
	cfg   HTTPConfig
	hc    *http.Client
	locks keyLock
	// sleep waits between attempts; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

var _ Sink = (*HTTP)(nil)

// Check reports whether NewHTTP would accept c.
func (c HTTPConfig) Check() error {
	return checkHTTPConfig(&c)
}

// NewHTTP checks cfg and returns an HTTP sink.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	if err := checkHTTPConfig(&cfg); err != nil {
		return nil, permanent(fmt.Errorf("http sink: %w", err))
	}
	tr := cfg.Transport
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	hc := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return &HTTP{cfg: cfg, hc: hc, sleep: sleepCtx, now: time.Now}, nil
}

func checkHTTPConfig(cfg *HTTPConfig) error {
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("url %q: must be http or https", cfg.URL)
	case u.Host == "":
		return fmt.Errorf("url %q: no host", cfg.URL)
	case u.User != nil:
		return errors.New("url: must not carry credentials; send them in a header")
	case u.Fragment != "":
		return fmt.Errorf("url %q: must not have a fragment", cfg.URL)
	}
	for name, values := range cfg.Header {
		switch http.CanonicalHeaderKey(name) {
		case "Content-Type", "Content-Length", "Transfer-Encoding", IdempotencyKeyHeader, "Host":
			return fmt.Errorf("header %s: set by the sink", name)
		}
		if name == "" || strings.IndexFunc(name, func(r rune) bool {
			return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
		}) >= 0 {
			return fmt.Errorf("header name %q: not a token", name)
		}
		for _, v := range values {
			if strings.IndexFunc(v, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) >= 0 {
				return fmt.Errorf("header %s: control character in its value", name)
			}
		}
	}
	defaults := []struct {
		v    *time.Duration
		def  time.Duration
		name string
	}{
		{&cfg.Timeout, DefaultHTTPTimeout, "timeout"},
		{&cfg.MaxElapsed, DefaultHTTPMaxElapsed, "max elapsed"},
		{&cfg.BaseDelay, DefaultHTTPBaseDelay, "base delay"},
		{&cfg.MaxDelay, DefaultHTTPMaxDelay, "max delay"},
	}
	for _, d := range defaults {
		if *d.v < 0 {
			return fmt.Errorf("%s %s: negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxAttempts < 0 {
		return fmt.Errorf("max attempts %d: negative", cfg.MaxAttempts)
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultHTTPMaxAttempts
	}
	cfg.Header = cfg.Header.Clone()
	return nil
}

// Kind returns "http".
func (s *HTTP) Kind() string { return "http" }

// Longest is the most one Deliver takes: its attempts and waits within
// MaxElapsed, and the last attempt begun within it.
func (s *HTTP) Longest() time.Duration { return s.cfg.MaxElapsed + s.cfg.Timeout }

// Close closes idle connections.
func (s *HTTP) Close() error {
	s.hc.CloseIdleConnections()
	return nil
}

// Deliver posts d until the Fachverfahren confirms it, refuses it or the
// attempts run out.
func (s *HTTP) Deliver(ctx context.Context, d Delivery) error {
	d, err := normalize(d)
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", s.cfg.URL, err)
	}
	unlock, err := s.locks.lock(ctx, d.SubmissionID)
	if err != nil {
		return fmt.Errorf("deliver %s to %s: %w", d.SubmissionID, s.cfg.URL, err)
	}
	defer unlock()
	if err := s.deliver(ctx, d); err != nil {
		return fmt.Errorf("deliver %s to %s: %w", d.SubmissionID, s.cfg.URL, err)
	}
	return nil
}

func (s *HTTP) deliver(ctx context.Context, d Delivery) error {
	names := Filenames(d.Attachments)
	start := s.now()
	for attempt := 1; ; attempt++ {
		retryAfter, err := s.attempt(ctx, d, names)
		if err == nil || !errors.Is(err, errRetry) {
			return err
		}
		if ctx.Err() != nil {
			return transient(err)
		}
		if attempt >= s.cfg.MaxAttempts {
			return transient(fmt.Errorf("gave up after %d attempts: %w", attempt, err))
		}
		wait := s.backoff(attempt)
		if retryAfter > wait {
			wait = retryAfter
		}
		if elapsed := s.now().Sub(start); elapsed+wait > s.cfg.MaxElapsed {
			return transient(fmt.Errorf("gave up after %d attempts in %s, the next in %s would pass %s: %w",
				attempt, elapsed.Round(time.Millisecond), wait.Round(time.Millisecond), s.cfg.MaxElapsed, err))
		}
		if serr := s.sleep(ctx, wait); serr != nil {
			return transient(fmt.Errorf("wait for attempt %d: %w (last attempt: %v)", attempt+1, serr, err))
		}
	}
}

// errRetry marks an attempt's error as worth another attempt.
var errRetry = errors.New("retryable")

// retryable is an attempt's failure that another attempt may not repeat.
type retryable struct{ err error }

func (e *retryable) Error() string   { return e.err.Error() }
func (e *retryable) Unwrap() []error { return []error{e.err, errRetry, ErrTransient} }

func retry(err error) error { return &retryable{err: err} }

// backoff returns the wait before attempt+1: full jitter over an
// exponentially growing ceiling.
func (s *HTTP) backoff(attempt int) time.Duration {
	ceiling := s.cfg.MaxDelay
	if attempt < 32 {
		if d := s.cfg.BaseDelay << (attempt - 1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return rand.N(ceiling + 1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt makes one request. A retryable failure wraps errRetry and comes
// with the wait the Fachverfahren asked for, if any.
func (s *HTTP) attempt(ctx context.Context, d Delivery, names []string) (time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	pr, pw := io.Pipe()
	type verdict struct{ source, write error }
	written := make(chan verdict, 1)
	go func() {
		// Sources read under ctx: the attempt's timeout aborts the request,
		// which closes the pipe, and is no failure of the source.
		srcErr, writeErr := writeBody(ctx, pw, d, names)
		pw.CloseWithError(errors.Join(srcErr, writeErr))
		written <- verdict{srcErr, writeErr}
	}()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.cfg.URL, pr)
	if err != nil {
		pr.Close()
		<-written
		return 0, permanent(err)
	}
	for name, values := range s.cfg.Header {
		req.Header[http.CanonicalHeaderKey(name)] = values
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(IdempotencyKeyHeader, d.SubmissionID)
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "amtsbote-subscriber")
	}
	resp, err := s.hc.Do(req)
	var status *StatusError
	var wait time.Duration
	if err == nil {
		status, wait = readAnswer(resp)
	}
	// The body's writer may still be blocked; stop it and take its verdict.
	pr.CloseWithError(errAbandoned)
	v := <-written
	switch {
	case ctx.Err() != nil:
		return 0, transient(ctx.Err())
	case v.source != nil:
		// The source broke, not the Fachverfahren: another attempt would not help.
		return 0, v.source
	case err != nil:
		return 0, retry(err)
	case status == nil:
		return 0, nil
	case retryableStatus(status.Code):
		return wait, retry(status)
	case mendedStatus(status.Code):
		// Asked again at once it answers the same: the subscriber's own
		// backoff paces the retries until an operator mends it.
		return 0, transient(status)
	}
	return 0, permanent(status)
}

// errAbandoned ends a request body nobody reads any more.
var errAbandoned = errors.New("request body abandoned")

func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return code >= 500 && code < 600
}

// mendedStatus reports answers about credentials or the address, which an
// operator mends, not a refusal of the submission.
func mendedStatus(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return code >= 300 && code < 400
}

// readAnswer reads and closes resp: nil for a success, else the status
// with a snippet of the body and the wait Retry-After asks for.
func readAnswer(resp *http.Response) (*StatusError, time.Duration) {
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxSnippet+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil, 0
	}
	e := &StatusError{Code: resp.StatusCode, Snippet: snippet(head)}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Location = snippet([]byte(resp.Header.Get("Location")))
	}
	return e, parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
}

// snippet makes b printable for a log line.
func snippet(b []byte) string {
	cut := len(b) > maxSnippet
	if cut {
		b = b[:maxSnippet]
	}
	s := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return ' '
		}
		return r
	}, string(b))
	s = strings.Join(strings.Fields(s), " ")
	if cut {
		s += " …"
	}
	return s
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or
// unreadable, at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// writeBody streams d as the JSON document HTTP describes. It returns a
// failure of an attachment's source apart from a failure to write.
func writeBody(ctx context.Context, w io.Writer, d Delivery, names []string) (source, write error) {
	head := struct {
		SubmissionID      string          `json:"submissionId"`
		CaseID            string          `json:"caseId"`
		DestinationID     string          `json:"destinationId"`
		ServiceIdentifier string          `json:"serviceIdentifier"`
		Metadata          json.RawMessage `json:"metadata"`
		DataMimeType      string          `json:"dataMimeType,omitempty"`
		DataEncoding      string          `json:"dataEncoding,omitempty"`
		Data              *string         `json:"data,omitempty"`
	}{
		SubmissionID: d.SubmissionID, CaseID: d.CaseID, DestinationID: d.DestinationID,
		ServiceIdentifier: d.ServiceIdentifier, Metadata: d.Metadata,
	}
	if d.Data != nil {
		data := string(d.Data)
		head.DataMimeType, head.DataEncoding, head.Data = d.DataMimeType, "utf-8", &data
		if !utf8.Valid(d.Data) {
			data = base64.StdEncoding.EncodeToString(d.Data)
			head.DataEncoding = "base64"
		}
	}
	raw, err := json.Marshal(head)
	if err != nil {
		return nil, permanent(err)
	}
	// bufio.Writer keeps its first error, which Flush reports.
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.Write(raw[:len(raw)-1]) // the object stays open for the attachments
	bw.WriteString(`,"attachments":[`)
	for i, a := range d.Attachments {
		if i > 0 {
			bw.WriteByte(',')
		}
		meta, err := json.Marshal(struct {
			ID       string `json:"id"`
			Filename string `json:"filename"`
			MimeType string `json:"mimeType"`
		}{a.ID, names[i], a.MimeType})
		if err != nil {
			return nil, permanent(err)
		}
		bw.Write(meta[:len(meta)-1])
		bw.WriteString(`,"content":"`)
		src, err := openSource(ctx, a, 0)
		if err != nil {
			return err, nil
		}
		enc := base64.NewEncoder(base64.StdEncoding, bw)
		_, err = io.Copy(enc, src)
		src.Close()
		if ferr := src.failure(); ferr != nil {
			return ferr, nil
		}
		if err == nil {
			err = enc.Close()
		}
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(bw, `","size":%d}`, src.n)
	}
	bw.WriteString("]}")
	return nil, bw.Flush()
}
