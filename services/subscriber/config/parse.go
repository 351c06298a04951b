package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/redact"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/services/subscriber/sink"
)

// Bounds of values.
const (
	maxConcurrency = 1024
	maxFilters     = 1024
	maxSubject     = 512
	maxAttempts    = 100
)

// durableRE is what NATS accepts as a durable consumer name, without the
// characters that would make it a subject or a path.
var durableRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// plainKeyRE are keys printed as they are in a field path.
var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// yamlLineRE finds the line in a YAML syntax error.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parsePrivate reads a private JWK; tests may replace it.
var parsePrivate = jose.ParsePrivate

type parser struct {
	file string
	dir  string
	errs Errors
}

func newParser(path string) *parser {
	return &parser{file: path, dir: filepath.Dir(path)}
}

func (p *parser) add(line int, field, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) parse(data []byte) *Config {
	if len(data) > maxFile {
		p.add(0, "", "larger than %d bytes", maxFile)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "", "empty configuration")
		} else {
			p.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.add(extra.Line, "", "a second YAML document; the configuration is one")
		return nil
	case !errors.Is(err, io.EOF):
		p.yamlError(err)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.add(0, "", "not a YAML document")
		return nil
	}
	root := p.mapping(doc.Content[0], "", "mode", "nats", "http", "concurrency", "metadataSchema", "destinations", "forward", "sink")
	if root == nil {
		return nil
	}
	c := &Config{File: p.file, Concurrency: DefaultConcurrency}
	c.Mode = p.oneOf(root, "mode", true, ModeNATS, ModeHTTP)
	c.Destinations = p.destinations(root)
	switch c.Mode {
	case ModeNATS:
		if n := p.section(root, "nats"); n != nil {
			c.NATS = p.nats(n, c.Destinations)
		}
		// NATS only says what arrived: content and decisions go through
		// the Submission API in both modes.
		if n := p.section(root, "http"); n != nil {
			c.HTTP = p.http(n, c.Mode)
		}
	case ModeHTTP:
		p.notFor(root, "nats", "mode", c.Mode)
		if n := p.section(root, "http"); n != nil {
			c.HTTP = p.http(n, c.Mode)
		}
	}
	if n := root.get("concurrency"); n != nil {
		if v, ok := p.integer(n, "concurrency", 1, maxConcurrency); ok {
			c.Concurrency = int(v)
		}
	}
	if s, n := p.optional(root, "metadataSchema"); n != nil {
		c.MetadataSchema = p.schemaLocation(n, s)
	}
	if root.get("forward") != nil {
		if n := p.section(root, "forward"); n != nil {
			c.Forward = p.forward(n, c.Destinations)
		}
	}
	if n := p.section(root, "sink"); n != nil {
		c.Sink = p.sink(n)
	}
	if c.Sink.Kind == SinkPostgres {
		c.Sink.Postgres.Conns = int32(c.Concurrency)
	}
	return c
}

// maxForwardRules bounds the forward rules.
const maxForwardRules = 1024

func (p *parser) forward(m *mapping, dests []Destination) *Forward {
	f := &Forward{}
	f.ClientID, _, _ = p.required(m, "clientId")
	f.ClientSecret, _ = p.secret(m, "clientSecret", "clientSecretFile", true)
	n := m.get("rules")
	if n == nil {
		p.missing(m, "rules", "required: at least one rule")
		return f
	}
	items := p.list(n, "forward.rules")
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		p.add(n.Line, "forward.rules", "is empty: at least one rule")
	}
	if len(items) > maxForwardRules {
		p.add(n.Line, "forward.rules", "more than %d rules", maxForwardRules)
		return f
	}
	served := map[string]bool{}
	for _, d := range dests {
		served[d.ID] = true
	}
	seen := map[[2]string]int{}
	for i, e := range items {
		path := index("forward.rules", i)
		rm := p.mapping(e, path, "service", "from", "to")
		if rm == nil {
			continue
		}
		var r ForwardRule
		ok := true
		if s, sn, good := p.required(rm, "service"); good {
			if err := routing.CheckServiceURN(s); err != nil {
				p.add(sn.Line, path+".service", "%v", err)
				ok = false
			}
			r.Service = s
		} else {
			ok = false
		}
		if s, fn := p.optional(rm, "from"); fn != nil {
			id, good := p.uuid(fn, path+".from", s)
			switch {
			case !good:
				ok = false
			case !served[id]:
				p.add(fn.Line, path+".from", "%s is none of the destinations served here", id)
				ok = false
			}
			r.From = id
		}
		if s, tn, good := p.required(rm, "to"); good {
			id, good := p.uuid(tn, path+".to", s)
			if good && id == r.From {
				p.add(tn.Line, path+".to", "forwards %s to itself", id)
				good = false
			}
			ok = ok && good
			r.To = id
		} else {
			ok = false
		}
		if !ok {
			continue
		}
		key := [2]string{r.Service, r.From}
		if j, dup := seen[key]; dup {
			p.add(e.Line, path, "forwards the same service from the same destinations as rule %d", j)
			continue
		}
		seen[key] = i
		f.Rules = append(f.Rules, r)
	}
	// A submission forwarded to a destination served here is handled here
	// again; rules that lead back would forward it for ever.
	for _, r := range f.Rules {
		for _, d := range dests {
			if cycle := f.cycle(d.ID, r.Service, served); cycle != "" {
				p.add(n.Line, "forward.rules", "the rules forward service %s in a cycle among the destinations served here: %s", r.Service, cycle)
				return f
			}
		}
	}
	return f
}

// uuid checks a UUID in its 36-character form and returns it in lower case.
func (p *parser) uuid(n *yaml.Node, path, s string) (string, bool) {
	if s == "" {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		p.add(n.Line, path, "%q is not a UUID", s)
		return "", false
	}
	return u.String(), true
}

// yamlError reports a syntax error at its line.
func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if line, err := strconv.Atoi(m[1]); err == nil {
			p.add(line, "", "%s", m[2])
			return
		}
	}
	p.add(0, "", "%s", strings.TrimPrefix(msg, "yaml: "))
}

// mapping is a checked YAML mapping.
type mapping struct {
	node *yaml.Node
	path string
	// line is where the mapping is named: its key's line, or its own.
	line int
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
	// bad holds keys whose value was refused already.
	bad map[string]bool
}

func join(path, key string) string {
	if !plainKeyRE.MatchString(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// get returns the value of key; nil when absent or null.
func (m *mapping) get(key string) *yaml.Node {
	n := m.vals[key]
	if n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	return n
}

// mapping checks that n is a mapping of the allowed keys, each once.
func (p *parser) mapping(n *yaml.Node, path string, allowed ...string) *mapping {
	if !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, path, "must be a mapping, is %s", kind(n))
		return nil
	}
	m := &mapping{node: n, path: path, line: n.Line, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, bad: map[string]bool{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			p.add(k.Line, path, "keys must be plain strings; YAML merge keys are not supported")
			continue
		}
		field := join(path, k.Value)
		switch {
		case !slices.Contains(allowed, k.Value):
			p.add(k.Line, field, "unknown key; allowed: %s", strings.Join(allowed, ", "))
		case m.keys[k.Value] != nil:
			p.add(k.Line, field, "appears twice")
		case p.plain(v, field):
			m.keys[k.Value], m.vals[k.Value] = k, v
		default:
			m.keys[k.Value], m.bad[k.Value] = k, true
		}
	}
	return m
}

// plain refuses aliases and custom tags, which the configuration does
// not need and which would make a value depend on another.
func (p *parser) plain(n *yaml.Node, path string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		p.add(n.Line, path, "YAML aliases are not supported")
		return false
	case n.Tag != "" && !strings.HasPrefix(n.Tag, "!!"):
		p.add(n.Line, path, "custom YAML tag %q is not supported", n.Tag)
		return false
	}
	return true
}

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return "a scalar"
	}
	return "something else"
}

// section returns the mapping under key with its allowed keys, reporting
// its absence.
func (p *parser) section(m *mapping, key string) *mapping {
	n := m.get(key)
	if n == nil {
		p.missing(m, key, "required")
		return nil
	}
	child := p.mapping(n, join(m.path, key), sectionKeys[join(m.path, key)]...)
	if child != nil {
		child.line = m.keys[key].Line
	}
	return child
}

// missing reports an absent key at the line naming its mapping, unless
// its value was refused already.
func (p *parser) missing(m *mapping, key, msg string) {
	if !m.bad[key] {
		p.add(m.line, join(m.path, key), "%s", msg)
	}
}

// sectionKeys are the keys each section allows.
var sectionKeys = map[string][]string{
	"nats": {"url", "credentials", "user", "password", "passwordFile", "token", "tokenFile", "durable", "filters"},
	"http": {"baseUrl", "tokenUrl", "clientId", "clientSecret", "clientSecretFile", "pollInterval",
		"callbackListen", "callbackSecret", "callbackSecretFile"},
	"forward":       {"clientId", "clientSecret", "clientSecretFile", "rules"},
	"sink":          {"kind", "directory", "http", "postgres"},
	"sink.http":     {"url", "timeout", "maxAttempts", "maxElapsed", "headers"},
	"sink.postgres": {"url", "urlFile", "schema", "table", "maxAttachment"},
}

// notFor reports a key that the choice made by another does not use.
func (p *parser) notFor(m *mapping, key, by, choice string) {
	if k := m.keys[key]; k != nil {
		p.add(k.Line, join(m.path, key), "not used with %s %s; remove it", by, choice)
	}
}

// str returns a non-empty scalar without control characters.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.add(n.Line, path, "must be a string, is %s", kind(n))
		return "", false
	}
	switch n.Tag {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
	case "!!null":
		p.add(n.Line, path, "must not be empty")
		return "", false
	default:
		p.add(n.Line, path, "must be a string, is %s", n.Tag)
		return "", false
	}
	if n.Value == "" {
		p.add(n.Line, path, "must not be empty")
		return "", false
	}
	if i := strings.IndexFunc(n.Value, unicode.IsControl); i >= 0 {
		p.add(n.Line, path, "has a control character at byte %d", i)
		return "", false
	}
	return n.Value, true
}

// required returns the string under key, reporting its absence.
func (p *parser) required(m *mapping, key string) (string, *yaml.Node, bool) {
	n := m.get(key)
	if n == nil {
		p.missing(m, key, "required")
		return "", nil, false
	}
	s, ok := p.str(n, join(m.path, key))
	return s, n, ok
}

// optional returns the string under key, "" when absent.
func (p *parser) optional(m *mapping, key string) (string, *yaml.Node) {
	n := m.get(key)
	if n == nil {
		return "", nil
	}
	s, _ := p.str(n, join(m.path, key))
	return s, n
}

func (p *parser) oneOf(m *mapping, key string, required bool, values ...string) string {
	var s string
	var n *yaml.Node
	var ok bool
	if required {
		s, n, ok = p.required(m, key)
	} else {
		s, n = p.optional(m, key)
		ok = n != nil && s != ""
	}
	if !ok {
		return ""
	}
	if !slices.Contains(values, s) {
		p.add(n.Line, join(m.path, key), "%q is none of %s", s, strings.Join(values, ", "))
		return ""
	}
	return s
}

func (p *parser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		p.add(n.Line, path, "must be a whole number")
		return 0, false
	}
	if v < lo || v > hi {
		p.add(n.Line, path, "%d is outside %d to %d", v, lo, hi)
		return 0, false
	}
	return v, true
}

func (p *parser) duration(n *yaml.Node, path string, lo time.Duration) (time.Duration, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.add(n.Line, path, "%q is no duration such as 30s or 5m", s)
		return 0, false
	}
	if d < lo {
		p.add(n.Line, path, "%s is shorter than %s", d, lo)
		return 0, false
	}
	return d, true
}

func (p *parser) list(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, path, "must be a list, is %s", kind(n))
		return nil
	}
	var out []*yaml.Node
	for i, e := range n.Content {
		if p.plain(e, index(path, i)) {
			out = append(out, e)
		}
	}
	return out
}

// webURL checks an absolute http or https URL without credentials.
func (p *parser) webURL(n *yaml.Node, path, s string) bool {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		p.add(n.Line, path, "%q is not a URL", s)
	case u.Scheme != "http" && u.Scheme != "https":
		p.add(n.Line, path, "%q must be an http or https URL", s)
	case u.Host == "":
		p.add(n.Line, path, "%q has no host", s)
	case u.User != nil:
		p.add(n.Line, path, "must not carry credentials")
	case u.Fragment != "" || u.RawQuery != "" && path != "sink.http.url":
		p.add(n.Line, path, "%q must not have a query or fragment", s)
	default:
		return true
	}
	return false
}

// schemaLocation checks a JSON Schema's location, an http(s) URL or a
// file, and returns it with a relative path resolved.
func (p *parser) schemaLocation(n *yaml.Node, s string) string {
	if strings.Contains(s, "://") {
		if p.webURL(n, "metadataSchema", s) {
			return s
		}
		return ""
	}
	if _, ok := p.readNamed(n, "metadataSchema", s); !ok {
		return ""
	}
	return p.resolve(s)
}

// resolve makes a path from the file relative to its folder.
func (p *parser) resolve(s string) string {
	if filepath.IsAbs(s) {
		return filepath.Clean(s)
	}
	return filepath.Join(p.dir, s)
}

// readNamed reads a file the configuration names, reporting failures at
// the naming value.
func (p *parser) readNamed(n *yaml.Node, path, name string) ([]byte, bool) {
	data, err := readFile(p.resolve(name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add(n.Line, path, "file %s: %v", name, errNoFile)
	case errors.Is(err, fs.ErrPermission):
		p.add(n.Line, path, "file %s: permission denied", name)
	case err != nil:
		p.add(n.Line, path, "file %s: %v", name, err)
	default:
		return data, true
	}
	return nil, false
}

// secret returns the secret under key or read from the file under
// fileKey, at most one of which may be given.
func (p *parser) secret(m *mapping, key, fileKey string, required bool) (Secret, bool) {
	v, f := m.get(key), m.get(fileKey)
	switch {
	case v != nil && f != nil:
		p.add(f.Line, join(m.path, fileKey), "give %s or %s, not both", key, fileKey)
		return "", false
	case v != nil:
		s, ok := p.str(v, join(m.path, key))
		return Secret(s), ok
	case f != nil:
		name, ok := p.str(f, join(m.path, fileKey))
		if !ok {
			return "", false
		}
		data, ok := p.readNamed(f, join(m.path, fileKey), name)
		if !ok {
			return "", false
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" || strings.IndexFunc(s, unicode.IsControl) >= 0 {
			p.add(f.Line, join(m.path, fileKey), "file %s must hold the secret on one line", name)
			return "", false
		}
		return Secret(s), true
	case required && !m.bad[fileKey]:
		p.missing(m, key, "required (or "+fileKey+")")
	}
	return "", false
}

func (p *parser) nats(m *mapping, dests []Destination) NATS {
	var c NATS
	if s, n, ok := p.required(m, "url"); ok {
		var urls []string
		for _, raw := range strings.Split(s, ",") {
			raw = strings.TrimSpace(raw)
			u, err := url.Parse(raw)
			switch {
			case err != nil || raw == "":
				p.add(n.Line, "nats.url", "%q is not a URL", raw)
			case !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme):
				p.add(n.Line, "nats.url", "%q must be a nats, tls, ws or wss URL", raw)
			case u.Host == "":
				p.add(n.Line, "nats.url", "%q has no host", raw)
			case u.User != nil:
				p.add(n.Line, "nats.url", "must not carry credentials; use credentials, user or token")
			default:
				urls = append(urls, raw)
			}
		}
		c.URL = strings.Join(urls, ",")
	}
	methods := 0
	if s, n := p.optional(m, "credentials"); s != "" {
		methods++
		if data, ok := p.readNamed(n, "nats.credentials", s); ok {
			if !bytes.Contains(data, []byte("BEGIN NATS USER JWT")) || !bytes.Contains(data, []byte("BEGIN USER NKEY SEED")) {
				p.add(n.Line, "nats.credentials", "file %s is no NATS .creds file (user JWT and nkey seed)", s)
			}
			c.Credentials = p.resolve(s)
		}
	}
	if user, _ := p.optional(m, "user"); user != "" {
		methods++
		c.User = user
		c.Password, _ = p.secret(m, "password", "passwordFile", true)
	} else if m.get("password") != nil || m.get("passwordFile") != nil {
		p.add(m.line, "nats.user", "required with a password")
	}
	if m.get("token") != nil || m.get("tokenFile") != nil {
		methods++
		c.Token, _ = p.secret(m, "token", "tokenFile", true)
	}
	if methods > 1 {
		p.add(m.line, "nats", "give one of credentials, user and password, or token")
	}
	if s, n, ok := p.required(m, "durable"); ok {
		if !durableRE.MatchString(s) {
			p.add(n.Line, "nats.durable", "%q must be 1 to 128 letters, digits, '-' or '_'", s)
		} else {
			c.Durable = s
		}
	}
	if n := m.get("filters"); n != nil {
		items := p.list(n, "nats.filters")
		if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			p.add(n.Line, "nats.filters", "is empty; leave it out to derive one filter per destination")
		}
		if len(items) > maxFilters {
			p.add(n.Line, "nats.filters", "more than %d filters", maxFilters)
			items = nil
		}
		for i, e := range items {
			path := index("nats.filters", i)
			s, ok := p.str(e, path)
			if !ok {
				continue
			}
			if err := checkFilter(s); err != nil {
				p.add(e.Line, path, "%v", err)
				continue
			}
			if slices.Contains(c.Filters, s) {
				p.add(e.Line, path, "%q appears twice", s)
				continue
			}
			c.Filters = append(c.Filters, s)
		}
	} else {
		for _, d := range dests {
			if f, err := bus.InboxDestinationFilter(d.ID); err == nil {
				c.Filters = append(c.Filters, f)
			}
		}
	}
	return c
}

// checkFilter accepts an INBOX subject filter: tokens separated by dots,
// '*' and '>' only as whole tokens, '>' only last.
func checkFilter(s string) error {
	if len(s) > maxSubject {
		return fmt.Errorf("longer than %d bytes", maxSubject)
	}
	if !strings.HasPrefix(s, bus.PrefixInbox+".") {
		return fmt.Errorf("%q is no %s subject", s, bus.PrefixInbox)
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return fmt.Errorf("%q has an empty token", s)
		case strings.IndexFunc(t, unicode.IsSpace) >= 0:
			return fmt.Errorf("%q has white space", s)
		case t == ">" && i != len(tokens)-1:
			return fmt.Errorf("%q has '>' before its last token", s)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("%q has a wildcard inside a token", s)
		}
	}
	return nil
}

func (p *parser) http(m *mapping, mode string) HTTP {
	c := HTTP{PollInterval: DefaultPollInterval}

	if s, n, ok := p.required(m, "baseUrl"); ok && p.webURL(n, "http.baseUrl", s) {
		c.BaseURL = strings.TrimRight(s, "/")
	}
	if s, n := p.optional(m, "tokenUrl"); s != "" {
		if p.webURL(n, "http.tokenUrl", s) {
			c.TokenURL = s
		}
	} else if c.BaseURL != "" {
		c.TokenURL = c.BaseURL + "/token"
	}
	c.ClientID, _, _ = p.required(m, "clientId")
	c.ClientSecret, _ = p.secret(m, "clientSecret", "clientSecretFile", true)
	if mode == ModeNATS {
		// NATS wakes the subscriber: nothing polls, no callback arrives.
		c.PollInterval = 0
		for _, k := range []string{"pollInterval", "callbackListen", "callbackSecret", "callbackSecretFile"} {
			p.notFor(m, k, "mode", mode)
		}
		return c
	}
	if n := m.get("pollInterval"); n != nil {
		if d, ok := p.duration(n, "http.pollInterval", time.Second); ok {
			c.PollInterval = d
		}
	}
	if s, n := p.optional(m, "callbackListen"); s != "" {
		if err := checkListen(s); err != nil {
			p.add(n.Line, "http.callbackListen", "%q: %v", s, err)
		} else {
			c.CallbackListen = s
		}
		if secret, ok := p.secret(m, "callbackSecret", "callbackSecretFile", true); ok {
			if err := client.CheckCallbackSecret(secret.Reveal()); err != nil {
				line := m.get("callbackSecret")
				if line == nil {
					line = m.get("callbackSecretFile")
				}
				p.add(line.Line, "http.callbackSecret", "%v", err)
			} else {
				c.CallbackSecret = secret
			}
		}
	} else {
		for _, k := range []string{"callbackSecret", "callbackSecretFile"} {
			if n := m.get(k); n != nil {
				p.add(n.Line, join("http", k), "without callbackListen nothing receives callbacks")
			}
		}
	}
	return c
}

func checkListen(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("must be host:port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return errors.New("port must be 0 to 65535")
	}
	return nil
}

func (p *parser) destinations(root *mapping) []Destination {
	n := root.get("destinations")
	if n == nil {
		p.missing(root, "destinations", "required: at least one destination")
		return nil
	}
	items := p.list(n, "destinations")
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		p.add(n.Line, "destinations", "is empty: at least one destination")
	}
	var out []Destination
	seen := map[string]bool{}
	for i, e := range items {
		path := index("destinations", i)
		m := p.mapping(e, path, "id", "encryptionKeys", "signingKey")
		if m == nil {
			continue
		}
		var d Destination
		if s, idn, ok := p.required(m, "id"); ok {
			u, err := uuid.Parse(s)
			switch {
			case err != nil || len(s) != 36:
				p.add(idn.Line, path+".id", "%q is not a UUID", s)
			case seen[u.String()]:
				p.add(idn.Line, path+".id", "%s appears twice", u)
			default:
				d.ID = u.String()
				seen[d.ID] = true
			}
		}
		if kn := m.get("encryptionKeys"); kn == nil {
			p.missing(m, "encryptionKeys", "required: at least one key file")
		} else {
			keys := p.list(kn, path+".encryptionKeys")
			if kn.Kind == yaml.SequenceNode && len(kn.Content) == 0 {
				p.add(kn.Line, path+".encryptionKeys", "is empty: at least one key file")
			}
			kids := map[string]bool{}
			for j, k := range keys {
				kpath := index(path+".encryptionKeys", j)
				file, kp, ok := p.key(k, kpath, jose.Encryption)
				if !ok {
					continue
				}
				if kids[kp.Public.KeyID] {
					p.add(k.Line, kpath, "kid %q appears twice", kp.Public.KeyID)
					continue
				}
				kids[kp.Public.KeyID] = true
				d.EncryptionKeyFiles = append(d.EncryptionKeyFiles, file)
				d.EncryptionKeys = append(d.EncryptionKeys, kp)
			}
		}
		if kn := m.get("signingKey"); kn == nil {
			p.missing(m, "signingKey", "required")
		} else if file, kp, ok := p.key(kn, path+".signingKey", jose.Signing); ok {
			d.SigningKeyFile, d.SigningKey = file, kp
		}
		out = append(out, d)
	}
	return out
}

// key reads a private JWK and checks its purpose.
func (p *parser) key(n *yaml.Node, path string, want jose.Purpose) (string, jose.KeyPair, bool) {
	name, ok := p.str(n, path)
	if !ok {
		return "", jose.KeyPair{}, false
	}
	data, ok := p.readNamed(n, path, name)
	if !ok {
		return "", jose.KeyPair{}, false
	}
	kp, err := parsePrivate(data)
	if err != nil {
		p.add(n.Line, path, "file %s: %v", name, err)
		return "", jose.KeyPair{}, false
	}
	if kp.Purpose != want {
		p.add(n.Line, path, "file %s holds %s key, want %s key", name, purposeNoun(kp.Purpose), purposeNoun(want))
		return "", jose.KeyPair{}, false
	}
	return p.resolve(name), kp, true
}

func purposeNoun(p jose.Purpose) string {
	if p == jose.Encryption {
		return "an encryption (" + jose.AlgRSAOAEP256 + ")"
	}
	return "a signing (" + jose.AlgPS512 + ")"
}

func (p *parser) sink(m *mapping) Sink {
	var c Sink
	c.Kind = p.oneOf(m, "kind", true, SinkDirectory, SinkHTTP, SinkPostgres)
	for _, k := range []string{SinkDirectory, SinkHTTP, SinkPostgres} {
		if k != c.Kind && c.Kind != "" {
			p.notFor(m, k, "sink kind", c.Kind)
		}
	}
	switch c.Kind {
	case SinkDirectory:
		if s, _, ok := p.required(m, "directory"); ok {
			c.Directory = p.resolve(s)
		}
	case SinkHTTP:
		if n := p.section(m, "http"); n != nil {
			c.HTTP = p.sinkHTTP(n)
		}
	case SinkPostgres:
		if n := p.section(m, "postgres"); n != nil {
			c.Postgres = p.sinkPostgres(n)
		}
	}
	return c
}

func (p *parser) sinkHTTP(m *mapping) sink.HTTPConfig {
	var c sink.HTTPConfig
	if s, n, ok := p.required(m, "url"); ok && p.webURL(n, "sink.http.url", s) {
		c.URL = s
	}
	if n := m.get("timeout"); n != nil {
		c.Timeout, _ = p.duration(n, "sink.http.timeout", time.Millisecond)
	}
	if n := m.get("maxElapsed"); n != nil {
		c.MaxElapsed, _ = p.duration(n, "sink.http.maxElapsed", time.Millisecond)
	}
	if n := m.get("maxAttempts"); n != nil {
		v, _ := p.integer(n, "sink.http.maxAttempts", 1, maxAttempts)
		c.MaxAttempts = int(v)
	}
	if n := m.get("headers"); n != nil {
		if !p.plain(n, "sink.http.headers") {
			return c
		}
		if n.Kind != yaml.MappingNode {
			p.add(n.Line, "sink.http.headers", "must be a mapping, is %s", kind(n))
			return c
		}
		c.Header = http.Header{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name, ok := p.str(k, "sink.http.headers")
			if !ok {
				continue
			}
			path := join("sink.http.headers", name)
			if c.Header.Get(name) != "" {
				p.add(k.Line, path, "appears twice")
				continue
			}
			if !p.plain(v, path) {
				continue
			}
			value, ok := p.str(v, path)
			if !ok {
				continue
			}
			one := sink.HTTPConfig{URL: "http://check", Header: http.Header{name: {value}}}
			if err := one.Check(); err != nil {
				p.add(k.Line, path, "%v", err)
				continue
			}
			c.Header.Set(name, value)
		}
	}
	if c.URL != "" {
		if err := c.Check(); err != nil {
			p.add(m.line, "sink.http", "%v", err)
		}
	}
	return c
}

func (p *parser) sinkPostgres(m *mapping) sink.PostgresConfig {
	var c sink.PostgresConfig
	if url, ok := p.secret(m, "url", "urlFile", true); ok {
		c.URL = url.Reveal()
	}
	if s, n := p.optional(m, "schema"); s != "" {
		if err := (sink.PostgresConfig{URL: "x", Schema: s}).Check(); err != nil {
			p.add(n.Line, "sink.postgres.schema", "%v", err)
		} else {
			c.Schema = s
		}
	}
	if s, n := p.optional(m, "table"); s != "" {
		if err := (sink.PostgresConfig{URL: "x", Table: s}).Check(); err != nil {
			p.add(n.Line, "sink.postgres.table", "%v", err)
		} else {
			c.Table = s
		}
	}
	if n := m.get("maxAttachment"); n != nil {
		c.MaxAttachment, _ = p.integer(n, "sink.postgres.maxAttachment", 1, sink.MaxPostgresAttachment)
	}
	return c
}

// redactDSN masks the password of a postgres:// URL or key=value string.
func redactDSN(dsn string) string { return redact.DSN(dsn, masked) }

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
