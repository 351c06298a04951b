// Package config reads the subscriber's YAML configuration: where
// submissions come from (NATS JetStream or the Submission API over HTTP),
// which destinations it serves with which private keys, and into which
// sink it delivers. Load checks everything at start, reads the key files
// and reports every problem with the file, line and field, e.g.
//
//	subscriber.yaml:12: destinations[1].encryptionKeys[0]: file keys/x.json: no such file
//
// A complete example:
//
//	mode: nats                  # nats | http
//	nats:                       # with mode nats
//	  url: nats://127.0.0.1:4223          # comma-separated for a cluster
//	  credentials: ./sub.creds            # or user + password(File), or token(File), or none
//	  durable: subscriber-08315
//	  filters: ["ab.inbox.08.08315.>"]    # INBOX subjects; one per destination when absent
//	http:                       # in both modes: content, accept and reject
//	  baseUrl: http://localhost:8080
//	  tokenUrl: http://localhost:8080/token   # baseUrl + /token when absent
//	  clientId: bauamt-08315                 # a subscribe:destination client
//	  clientSecretFile: ./client.secret      # or clientSecret
//	  pollInterval: 30s                      # mode http only: default 30s, at least 1s
//	  callbackListen: 127.0.0.1:9090         # mode http only, optional: receive new-submissions callbacks
//	  callbackSecretFile: ./callback.secret  # or callbackSecret, 32 to 512 characters
//	concurrency: 4              # submissions handled at once, default 4
//	metadataSchema: https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json   # optional, or a file
//	destinations:
//	  - id: 2f0b0e1c-8d0a-4b9e-9c77-5f1b3d1e2a01
//	    encryptionKeys: [./keys/enc.private.jwk.json]   # RSA-OAEP-256 private JWKs
//	    signingKey: ./keys/sig.private.jwk.json         # PS512 private JWK
//	forward:                    # optional: hand on what another destination is responsible for
//	  clientId: gemeinde-weiterleitung       # a send:region client of the Submission API at http.baseUrl
//	  clientSecretFile: ./forward.secret     # or clientSecret
//	  rules:
//	    - service: urn:de:fim:leika:leistung:99108011000000
//	      from: 2f0b0e1c-8d0a-4b9e-9c77-5f1b3d1e2a01   # optional: only submissions to this destination
//	      to: 7d4c1a3e-0b5f-4e2d-8a9c-6e1f2b3c4d5e     # the responsible destination
//	sink:
//	  kind: directory           # directory | http | postgres
//	  directory: ./data/sink    # with kind directory
//	  http:                     # with kind http
//	    url: https://fachverfahren.example/intake
//	    timeout: 30s            # per request, default 1m
//	    maxAttempts: 8          # default 8
//	    maxElapsed: 5m          # default 5m
//	    headers: {Authorization: "Bearer …"}
//	  postgres:                 # with kind postgres
//	    url: postgres://subscriber@db/fachverfahren   # a pool of `concurrency` connections unless it sets pool_max_conns
//	    # urlFile: ./sink-db.url   # or the URL, with its password, from a file
//	    schema: eingang         # default: the search_path's first
//	    table: submissions      # default submissions
//	    maxAttachment: 134217728
//
// Unknown keys, duplicate keys, YAML anchors and aliases, and a section
// that does not belong to the chosen mode or sink kind are errors.
// Relative paths resolve against the configuration file's folder. Key
// and secret files must be regular files of at most 1 MiB; a secret read
// from a file loses its trailing line break. Config.String prints the
// configuration with every secret masked.
package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// Modes of pickup.
const (
	ModeNATS = "nats"
	ModeHTTP = "http"
)

// Sink kinds.
const (
	SinkDirectory = "directory"
	SinkHTTP      = "http"
	SinkPostgres  = "postgres"
)

// Defaults.
const (
	DefaultConcurrency  = 4
	DefaultPollInterval = 30 * time.Second
	// maxFile bounds the configuration file and every file it names.
	maxFile = 1 << 20
)

// Config is a checked subscriber configuration.
type Config struct {
	// File is the configuration file's path as given to Load.
	File string
	// Mode is ModeNATS or ModeHTTP; only the matching section is set.
	Mode        string
	NATS        NATS
	HTTP        HTTP
	Concurrency int
	// MetadataSchema is the JSON Schema every submission's metadata is
	// checked against in full (a file or an http(s) URL); "" checks the
	// schema's structural rules and the hashes only.
	MetadataSchema string
	Destinations   []Destination
	// Forward is nil when nothing is forwarded.
	Forward *Forward
	Sink    Sink
}

// Forward hands on submissions of a service that another destination is
// responsible for: re-encrypted to that destination and submitted there
// by a sending client, then forward-submission on the original.
type Forward struct {
	ClientID     string
	ClientSecret Secret
	Rules        []ForwardRule
}

// ForwardRule forwards the submissions of Service to To; with From set,
// only those that arrived at From.
type ForwardRule struct {
	Service string
	From    string
	To      string
}

// Target returns the destination a submission of service that arrived at
// destinationID is forwarded to, and whether there is one. A rule never
// forwards a destination's submissions to itself.
func (f *Forward) Target(destinationID, service string) (string, bool) {
	if f == nil {
		return "", false
	}
	destinationID = strings.ToLower(destinationID)
	var general string
	for _, r := range f.Rules {
		if r.Service != service || r.To == destinationID {
			continue
		}
		if r.From == destinationID {
			return r.To, true
		}
		if r.From == "" && general == "" {
			general = r.To
		}
	}
	return general, general != ""
}

// cycle follows the rules for service from destination id while they lead
// to destinations served here and returns the path when it comes back to
// one it passed, as "a → b → a"; "" when it ends.
func (f *Forward) cycle(id, service string, served map[string]bool) string {
	path := []string{id}
	for {
		to, ok := f.Target(path[len(path)-1], service)
		if !ok || !served[to] {
			return ""
		}
		path = append(path, to)
		if slices.Contains(path[:len(path)-1], to) {
			return strings.Join(path, " → ")
		}
	}
}

// NATS is the pickup from the INBOX stream.
type NATS struct {
	// URL is one server URL or several, comma-separated (nats://, tls://,
	// ws:// or wss://), as nats.Connect takes them.
	URL string
	// Credentials is the path of a NATS .creds file, "" without one.
	Credentials string
	// User and Password, or Token, authenticate without a .creds file.
	User     string
	Password Secret
	Token    Secret
	// Durable names the consumer.
	Durable string
	// Filters are the INBOX subjects to consume: as configured, or one
	// per destination (ab.inbox.*.*.*.<id>).
	Filters []string
}

// HTTP is the Submission API: the pickup in mode http; in mode nats,
// where NATS names what arrived, the fetch of its content and the
// decisions. PollInterval and the callback are for mode http only.
type HTTP struct {
	BaseURL      string
	TokenURL     string
	ClientID     string
	ClientSecret Secret
	PollInterval time.Duration
	// CallbackListen is the host:port to receive new-submissions
	// callbacks on, "" for none; CallbackSecret verifies them.
	CallbackListen string
	CallbackSecret Secret
}

// Destination is a destination the subscriber serves, with its keys.
type Destination struct {
	// ID is the destination's UUID in lower case.
	ID string
	// EncryptionKeyFiles and SigningKeyFile are the resolved paths.
	EncryptionKeyFiles []string
	SigningKeyFile     string
	// EncryptionKeys are RSA-OAEP-256 private keys with distinct kids,
	// the current one and those still needed for submissions in flight.
	EncryptionKeys []jose.KeyPair
	// SigningKey is the PS512 key that signs accept and reject events.
	SigningKey jose.KeyPair
}

// Sink says where submissions are delivered.
type Sink struct {
	// Kind is SinkDirectory, SinkHTTP or SinkPostgres; only the matching
	// field is set.
	Kind string
	// Directory is the folder of a directory sink; it is made at start
	// if missing, its parent must exist.
	Directory string
	HTTP      sink.HTTPConfig
	Postgres  sink.PostgresConfig
}

// Open opens the sink s describes.
func (s Sink) Open(ctx context.Context) (sink.Sink, error) {
	var out sink.Sink
	var err error
	switch s.Kind {
	case SinkDirectory:
		out, err = sink.NewDirectory(s.Directory)
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			// A folder that cannot be made is no delivery failure yet.
			hint := ""
			if pe.Op == "mkdir" && errors.Is(pe.Err, fs.ErrNotExist) {
				hint = " (the folder is made, its parent must exist)"
			}
			return nil, fmt.Errorf("sink.directory: %s %s: %w%s", pe.Op, pe.Path, pe.Err, hint)
		}
	case SinkHTTP:
		out, err = sink.NewHTTP(s.HTTP)
	case SinkPostgres:
		out, err = sink.OpenPostgres(ctx, s.Postgres)
	default:
		return nil, fmt.Errorf("open sink: unknown kind %q", s.Kind)
	}
	if err != nil {
		// A nil *Directory in a Sink would not compare equal to nil.
		return nil, err
	}
	return out, nil
}

// Secret is a value that must not be printed: String, GoString and
// Format show "*****" (or "" when it is empty). Reveal returns it.
type Secret string

const masked = "*****"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String returns the masked secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return masked
}

// GoString returns the masked secret for %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format prints the masked secret whatever the verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || f.Flag('#') {
		io.WriteString(f, strconv.Quote(s.String()))
		return
	}
	io.WriteString(f, s.String())
}

// MarshalText returns the masked secret, so that encoders do not leak it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Error is one problem of a configuration file.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem concerns the whole file.
	Line int
	// Field is the path of the offending value, e.g.
	// "destinations[1].signingKey"; "" for the file itself.
	Field string
	Msg   string
}

// Error implements error: "file:line: field: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Errors are all problems of a configuration file, in the order of the
// file.
type Errors []*Error

// Error implements error, one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the single errors.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads and checks the configuration file at path. Its error is an
// Errors listing every problem.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		// The file is named once, by the error's File.
		msg := strings.TrimPrefix(err.Error(), path+": ")
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, Errors{{File: path, Msg: msg}}
	}
	return Parse(path, data)
}

// Parse checks data as the configuration file at path; relative paths in
// it resolve against path's folder. Its error is an Errors listing every
// problem.
func Parse(path string, data []byte) (*Config, error) {
	p := newParser(path)
	c := p.parse(data)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, p.errs
	}
	return c, nil
}

// readFile reads a regular file of at most maxFile bytes.
func readFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if info.Size() > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	return data, nil
}

// String prints c as YAML with every secret masked, and with the kids of
// the keys read.
func (c *Config) String() string {
	var b bytes.Buffer
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w(0, "# %s", c.File)
	w(0, "mode: %s", c.Mode)
	switch c.Mode {
	case ModeNATS:
		n := c.NATS
		w(0, "nats:")
		w(1, "url: %s", n.URL)
		if n.Credentials != "" {
			w(1, "credentials: %s", n.Credentials)
		}
		if n.User != "" {
			w(1, "user: %s", n.User)
			w(1, "password: %s", n.Password)
		}
		if n.Token != "" {
			w(1, "token: %s", n.Token)
		}
		w(1, "durable: %s", n.Durable)
		w(1, "filters: [%s]", strings.Join(n.Filters, ", "))
	}
	h := c.HTTP
	w(0, "http:")
	w(1, "baseUrl: %s", h.BaseURL)
	w(1, "tokenUrl: %s", h.TokenURL)
	w(1, "clientId: %s", h.ClientID)
	w(1, "clientSecret: %s", h.ClientSecret)
	if c.Mode == ModeHTTP {
		w(1, "pollInterval: %s", h.PollInterval)
		if h.CallbackListen != "" {
			w(1, "callbackListen: %s", h.CallbackListen)
			w(1, "callbackSecret: %s", h.CallbackSecret)
		}
	}
	w(0, "concurrency: %d", c.Concurrency)
	if c.MetadataSchema != "" {
		w(0, "metadataSchema: %s", c.MetadataSchema)
	}
	w(0, "destinations:")
	for _, d := range c.Destinations {
		w(1, "- id: %s", d.ID)
		w(2, "encryptionKeys:")
		for i, f := range d.EncryptionKeyFiles {
			w(3, "- %s  # kid %s", f, d.EncryptionKeys[i].Public.KeyID)
		}
		w(2, "signingKey: %s  # kid %s", d.SigningKeyFile, d.SigningKey.Public.KeyID)
	}
	if f := c.Forward; f != nil {
		w(0, "forward:")
		w(1, "clientId: %s", f.ClientID)
		w(1, "clientSecret: %s", f.ClientSecret)
		w(1, "rules:")
		for _, r := range f.Rules {
			w(2, "- service: %s", r.Service)
			if r.From != "" {
				w(3, "from: %s", r.From)
			}
			w(3, "to: %s", r.To)
		}
	}
	w(0, "sink:")
	w(1, "kind: %s", c.Sink.Kind)
	switch c.Sink.Kind {
	case SinkDirectory:
		w(1, "directory: %s", c.Sink.Directory)
	case SinkHTTP:
		h := c.Sink.HTTP
		w(1, "http:")
		w(2, "url: %s", h.URL)
		if h.Timeout > 0 {
			w(2, "timeout: %s", h.Timeout)
		}
		if h.MaxAttempts > 0 {
			w(2, "maxAttempts: %d", h.MaxAttempts)
		}
		if h.MaxElapsed > 0 {
			w(2, "maxElapsed: %s", h.MaxElapsed)
		}
		if len(h.Header) > 0 {
			w(2, "headers:")
			for _, name := range sortedKeys(h.Header) {
				w(3, "%s: %s", name, masked)
			}
		}
	case SinkPostgres:
		pg := c.Sink.Postgres
		w(1, "postgres:")
		w(2, "url: %s", redactDSN(pg.URL))
		if pg.Schema != "" {
			w(2, "schema: %s", pg.Schema)
		}
		if pg.Table != "" {
			w(2, "table: %s", pg.Table)
		}
		if pg.MaxAttachment > 0 {
			w(2, "maxAttachment: %d", pg.MaxAttachment)
		}
	}
	return b.String()
}

// errNoFile is the message of a missing file, shorter than fs's.
var errNoFile = errors.New("no such file")
