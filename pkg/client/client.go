// Package client is a Go SDK for both sides of FIT-Connect's Submission API
// v1, as Amtsbote serves it and, by changing the base URL (and the token
// URL), as FIT-Connect itself serves it.
//
// A Sender looks up a destination and its encryption key, checks the key
// against FIT-Connect's rules, encrypts metadata, data and attachments to
// it (compact JWE, RSA-OAEP-256 and A256GCM), announces, uploads and
// submits, and later reads and verifies the case's event log. A Receiver
// lists and fetches its destinations' submissions, decrypts them with its
// private keys, checks the metadata, the SHA-512 hashes and the
// authentication tags, and then accepts or rejects with a signed security
// event token.
//
// Memory: a sender encrypts each attachment in memory (the plaintext and
// its JWE are held at once, one attachment at a time), then streams the
// JWE to the server. A receiver decrypts attachments while downloading
// them and writes the plaintext to files, so it never holds an attachment
// whole.
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// Defaults of a Client.
const (
	// DefaultTimeout bounds each HTTP request of the default http.Client.
	// Uploads and downloads of large attachments may need a longer one.
	DefaultTimeout = 5 * time.Minute
	// DefaultRetries is how often a request that may safely be repeated is
	// retried after a network error or a 429, 502, 503 or 504 answer.
	DefaultRetries = 2
	// DefaultMaxAttachment bounds a downloaded attachment JWE, and the
	// plaintext decrypted from it, in bytes: as the gateway, 2 GiB of JWE.
	DefaultMaxAttachment = 2 << 30
	// maxJSON bounds a JSON answer; a submission carries a data JWE of
	// about 10 MB at most.
	maxJSON = 64 << 20
	// maxProblem bounds an error answer that is read for its problem.
	maxProblem = 64 << 10
)

// Client talks to one Submission API. Create it with New; use Sender and
// Receiver for the two sides.
type Client struct {
	base          string
	hc            *http.Client
	tokens        TokenSource
	schema        *jsonschema.Schema
	retries       int
	backoff       time.Duration
	maxAttachment int64
	attachmentDir string
	now           func() time.Time
	log           *slog.Logger

	mu       sync.Mutex
	jwks     map[string]*rsa.PublicKey // Amtsbote's (or FIT-Connect's) SET keys by kid
	jwksAt   time.Time
	destKeys map[string]*rsa.PublicKey // destination signing keys by "<destinationId>/<kid>"
}

// Option configures a Client.
type Option func(*config) error

type config struct {
	hc            *http.Client
	tokens        TokenSource
	clientID      string
	clientSecret  string
	scopes        []string
	tokenURL      string
	schemaLoc     string
	retries       int
	backoff       time.Duration
	maxAttachment int64
	attachmentDir string
	now           func() time.Time
	log           *slog.Logger
}

// Credentials makes the client fetch OAuth2 access tokens with the client
// credentials grant (client_secret_post) from the token URL, <base>/token
// unless TokenURL says otherwise. Without scopes the client gets all its
// granted scopes.
func Credentials(clientID, clientSecret string, scopes ...string) Option {
	return func(c *config) error {
		if clientID == "" || clientSecret == "" {
			return errors.New("credentials: client id and secret are required")
		}
		c.clientID, c.clientSecret, c.scopes = clientID, clientSecret, scopes
		return nil
	}
}

// TokenURL sets the OAuth2 token endpoint Credentials use; FIT-Connect's
// lives on a host of its own.
func TokenURL(u string) Option {
	return func(c *config) error {
		if _, err := parseBase(u); err != nil {
			return fmt.Errorf("token url: %w", err)
		}
		c.tokenURL = u
		return nil
	}
}

// Tokens makes the client take access tokens from ts instead of fetching
// them with Credentials.
func Tokens(ts TokenSource) Option {
	return func(c *config) error {
		c.tokens = ts
		return nil
	}
}

// HTTPClient sets the http.Client for every request (default: one with
// DefaultTimeout).
func HTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return errors.New("http client: nil")
		}
		c.hc = hc
		return nil
	}
}

// MetadataSchema makes the client validate metadata, before encrypting it
// and after decrypting it, against the JSON Schema at loc: a file path or
// an http(s) URL, such as FIT-Connect's metadata schema 1.0.0. New loads
// and compiles it. Without it the client checks the schema's structural
// rules in code: the required members, their types and patterns, and the
// hashes.
func MetadataSchema(loc string) Option {
	return func(c *config) error {
		if loc == "" {
			return errors.New("metadata schema: empty location")
		}
		c.schemaLoc = loc
		return nil
	}
}

// Retries sets how often a request that may safely be repeated is retried,
// and the backoff before the first retry, which doubles each time.
func Retries(n int, backoff time.Duration) Option {
	return func(c *config) error {
		if n < 0 || backoff < 0 {
			return errors.New("retries: negative")
		}
		c.retries, c.backoff = n, backoff
		return nil
	}
}

// MaxAttachmentSize bounds a downloaded attachment, encrypted and
// decrypted, in bytes (default DefaultMaxAttachment).
func MaxAttachmentSize(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return errors.New("max attachment size: not positive")
		}
		c.maxAttachment = n
		return nil
	}
}

// AttachmentDir is where a Receiver writes decrypted attachments (default
// os.TempDir()). Received.Close removes them.
func AttachmentDir(dir string) Option {
	return func(c *config) error {
		c.attachmentDir = dir
		return nil
	}
}

// Clock sets the clock for token expiry and event token checks (default
// time.Now).
func Clock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("clock: nil")
		}
		c.now = now
		return nil
	}
}

// Logger receives retries and other notable events (default: discard).
func Logger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("logger: nil")
		}
		c.log = l
		return nil
	}
}

// New returns a client of the Submission API at baseURL, such as
// "https://amtsbote.example.org" or FIT-Connect's
// "https://submission-api-testing.fit-connect.fitko.dev". Paths like
// /v1/submissions, /.well-known/jwks.json and /token are relative to it.
func New(baseURL string, opts ...Option) (*Client, error) {
	base, err := parseBase(baseURL)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	cfg := config{
		retries:       DefaultRetries,
		backoff:       200 * time.Millisecond,
		maxAttachment: DefaultMaxAttachment,
		now:           time.Now,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("new client: %w", err)
		}
	}
	if cfg.hc == nil {
		cfg.hc = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	if cfg.attachmentDir == "" {
		cfg.attachmentDir = os.TempDir()
	}
	if cfg.tokens == nil && cfg.clientID != "" {
		tokenURL := cfg.tokenURL
		if tokenURL == "" {
			tokenURL = base + "/token"
		}
		cfg.tokens = &ClientCredentials{
			TokenURL: tokenURL, ClientID: cfg.clientID, ClientSecret: cfg.clientSecret,
			Scopes: cfg.scopes, HTTPClient: cfg.hc, Now: cfg.now,
		}
	}
	c := &Client{
		base:          base,
		hc:            cfg.hc,
		tokens:        cfg.tokens,
		retries:       cfg.retries,
		backoff:       cfg.backoff,
		maxAttachment: cfg.maxAttachment,
		attachmentDir: cfg.attachmentDir,
		now:           cfg.now,
		log:           cfg.log,
		destKeys:      make(map[string]*rsa.PublicKey),
	}
	if cfg.schemaLoc != "" {
		if c.schema, err = loadSchema(cfg.hc, cfg.schemaLoc); err != nil {
			return nil, fmt.Errorf("new client: %w", err)
		}
	}
	return c, nil
}

func parseBase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q must not carry a query or fragment", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Sender returns the sending side of c.
func (c *Client) Sender() *Sender { return &Sender{c: c} }

// Receiver returns the receiving side of c.
func (c *Client) Receiver() *Receiver { return &Receiver{c: c} }

// request describes one API call.
type request struct {
	method string
	path   string // below the base URL, with the query
	body   func() io.Reader
	ctype  string
	header http.Header
	// want lists the success statuses; any other answer is an error.
	want []int
	// idempotent allows retries after network errors and overload answers.
	idempotent bool
	// anonymous sends no access token.
	anonymous bool
}

func jsonBody(v any) (func() io.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return func() io.Reader { return bytes.NewReader(b) }, nil
}

func stringBody(s string) func() io.Reader {
	return func() io.Reader { return strings.NewReader(s) }
}

// do sends req, retrying where allowed, and returns the response for the
// caller to read and close. An unwanted status yields the server's
// *problem.Problem (or one made from the status).
func (c *Client) do(ctx context.Context, req request) (*http.Response, error) {
	refreshed := false
	for attempt := 0; ; attempt++ {
		resp, err := c.send(ctx, req)
		if err == nil && resp.StatusCode == http.StatusUnauthorized && !refreshed && !req.anonymous {
			if inv, ok := c.tokens.(interface{ Invalidate() }); ok {
				// The token may have been revoked or have expired early.
				drain(resp)
				inv.Invalidate()
				refreshed = true
				attempt--
				continue
			}
		}
		retry := req.idempotent && attempt < c.retries && ctx.Err() == nil &&
			(err != nil && !errors.Is(err, errNoToken) || err == nil && retryable(resp.StatusCode))
		if !retry {
			if err != nil {
				return nil, err
			}
			if !wanted(resp.StatusCode, req.want) {
				defer drain(resp)
				return nil, readProblem(resp)
			}
			return resp, nil
		}
		wait := c.backoff << attempt
		if resp != nil {
			if ra := retryAfter(resp); ra > 0 {
				wait = ra
			}
			drain(resp)
		}
		// Jitter keeps many clients from retrying in lockstep.
		wait += time.Duration(rand.Int64N(int64(wait)/4 + 1))
		c.log.DebugContext(ctx, "retrying request", "method", req.method, "path", req.path, "attempt", attempt+1, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

var errNoToken = errors.New("no access token")

func (c *Client) send(ctx context.Context, req request) (*http.Response, error) {
	var body io.Reader
	if req.body != nil {
		body = req.body()
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, c.base+req.path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	if req.ctype != "" {
		hr.Header.Set("Content-Type", req.ctype)
	}
	if hr.Header.Get("Accept") == "" {
		hr.Header.Set("Accept", "application/json, application/problem+json")
	}
	if !req.anonymous && c.tokens != nil {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNoToken, err)
		}
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	return c.hc.Do(hr)
}

func wanted(status int, want []int) bool {
	for _, w := range want {
		if status == w {
			return true
		}
	}
	return false
}

func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryAfter reads a Retry-After header in seconds, capped at a minute.
func retryAfter(resp *http.Response) time.Duration {
	var secs int
	if _, err := fmt.Sscanf(resp.Header.Get("Retry-After"), "%d", &secs); err != nil || secs <= 0 {
		return 0
	}
	return min(time.Duration(secs)*time.Second, time.Minute)
}

// drain reads a little of the body so the connection can be reused, then closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// readProblem turns an error answer into a *problem.Problem: the server's
// own when it sent problem+json, else one made from the status and body.
func readProblem(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProblem))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == problem.ContentType || mt == "application/json" {
		var p problem.Problem
		if err := json.Unmarshal(body, &p); err == nil && p.Type != "" {
			if p.Status == 0 {
				p.Status = resp.StatusCode
			}
			return &p
		}
	}
	detail := strings.TrimSpace(string(body))
	if len(detail) > 512 {
		detail = detail[:512] + "…"
	}
	return &problem.Problem{Type: "about:blank", Title: http.StatusText(resp.StatusCode), Status: resp.StatusCode, Detail: detail}
}

// getJSON reads a JSON answer of an idempotent GET into v.
func (c *Client) getJSON(ctx context.Context, path string, anonymous bool, v any) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, want: []int{http.StatusOK}, idempotent: true, anonymous: anonymous})
	if err != nil {
		return err
	}
	defer drain(resp)
	return decodeJSON(resp.Body, v)
}

func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, maxJSON))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// loadSchema reads and compiles a JSON Schema from a file or URL.
func loadSchema(hc *http.Client, loc string) (*jsonschema.Schema, error) {
	var (
		r   io.ReadCloser
		err error
	)
	if strings.HasPrefix(loc, "https://") || strings.HasPrefix(loc, "http://") {
		var resp *http.Response
		if resp, err = hc.Get(loc); err != nil {
			return nil, fmt.Errorf("load metadata schema: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			drain(resp)
			return nil, fmt.Errorf("load metadata schema %s: status %d", loc, resp.StatusCode)
		}
		r = resp.Body
	} else if r, err = os.Open(loc); err != nil {
		return nil, fmt.Errorf("load metadata schema: %w", err)
	}
	defer r.Close()
	doc, err := jsonschema.UnmarshalJSON(io.LimitReader(r, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("load metadata schema %s: %w", loc, err)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	// The document is registered under a fixed name so that loc's form
	// (path or URL) does not matter; its $id governs references.
	const name = "urn:amtsbote:metadata-schema"
	if err := comp.AddResource(name, doc); err != nil {
		return nil, fmt.Errorf("load metadata schema %s: %w", loc, err)
	}
	sch, err := comp.Compile(name)
	if err != nil {
		return nil, fmt.Errorf("compile metadata schema %s: %w", loc, err)
	}
	return sch, nil
}
