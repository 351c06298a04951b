// Package cluster runs Amtsbote distributed on one machine: three
// clustered nats-server processes with JetStream, PostgreSQL, and each
// role of amtsbote serve as a process of its own on loopback. make cluster
// and make soak use it; the soak also kills and restarts its NATS nodes.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/redact"
)

// Config describes the cluster to start.
type Config struct {
	// Dir holds the NATS stores, keys, demo.json and the processes' logs;
	// a second start on the same Dir finds its streams and demo data.
	Dir string
	// Amtsbote and NATSServer are the binaries to run.
	Amtsbote, NATSServer string
	// DatabaseURL is the PostgreSQL database the roles share. With
	// CreateDatabase, the database named in it is created when missing.
	DatabaseURL    string
	CreateDatabase bool
	// Host is the loopback address everything listens on; BasePort the
	// first of the fixed ports (see Ports).
	Host     string
	BasePort int
	// Replicas of the streams and buckets the roles create.
	Replicas int
	// SubscriberConfig, when set, runs amtsbote subscriber --config with it.
	SubscriberConfig string
	// Log receives progress lines and the processes' unexpected exits.
	Log io.Writer
	// Restart starts a node or role that exited unasked again, after 1 s
	// doubling to 30 s, as a service manager would. Kills on purpose
	// (KillRole, KillNode) are not restarted.
	Restart bool
}

// Ports are where the parts listen, at fixed offsets from BasePort so the
// printed addresses stay the same from one start to the next.
type Ports struct {
	NATS, Routes, Monitor [3]int
	// Front is the load balancer in front of the gateways: the public URL.
	Front int
	// Roles maps a role process's name to its HTTP port.
	Roles map[string]int
	// Subscriber serves the subscriber's /healthz and /metrics.
	Subscriber int
}

// PortsFrom lays out the ports from base.
func PortsFrom(base int) Ports {
	p := Ports{Front: base + 80, Roles: map[string]int{}, Subscriber: base + 81 + len(roleNames)}
	for i := range 3 {
		p.NATS[i], p.Routes[i], p.Monitor[i] = base+1+i, base+11+i, base+21+i
	}
	for i, name := range roleNames {
		p.Roles[name] = base + 81 + i
	}
	return p
}

// A role process of the cluster: its name and serve's --target.
type role struct{ name, target string }

var roleList = []role{
	{"gateway-1", "gateway"}, {"gateway-2", "gateway"},
	{"router-1", "router"}, {"router-2", "router"},
	{"ledger", "ledger"}, {"signer", "signer"}, {"delivery", "delivery"},
}

var roleNames = func() []string {
	var out []string
	for _, r := range roleList {
		out = append(out, r.name)
	}
	return out
}()

// Cluster is a running cluster. Its methods are safe for concurrent use.
type Cluster struct {
	cfg       Config
	Ports     Ports
	PublicURL string
	// NATSURL lists the three servers, comma-separated.
	NATSURL string
	// Demo is the demo.json the roles were seeded with.
	Demo string

	mu      sync.Mutex
	nodes   [3]*Process
	roles   map[string]*Process
	front   *front
	stopped bool
}

// Start builds nothing: it starts the NATS nodes, waits for JetStream,
// seeds the demo data, starts the roles and the load balancer, and
// returns once every part answers. Stop ends them all.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	for _, d := range []string{"logs", "keys", "demo"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	c := &Cluster{cfg: cfg, Ports: PortsFrom(cfg.BasePort), roles: map[string]*Process{}}
	c.PublicURL = fmt.Sprintf("http://%s:%d", cfg.Host, c.Ports.Front)
	var urls []string
	for i := range 3 {
		urls = append(urls, fmt.Sprintf("nats://%s:%d", cfg.Host, c.Ports.NATS[i]))
	}
	c.NATSURL = strings.Join(urls, ",")
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()

	if cfg.CreateDatabase {
		if err := createDatabase(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(cfg.Log, "starting 3 nats-server nodes…\n")
	for i := range 3 {
		if err := c.writeNodeConfig(i); err != nil {
			return nil, err
		}
		if err := c.StartNode(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := c.waitJetStream(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	key, err := c.signingKey(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "seeding demo destinations and clients…\n")
	seed := exec.CommandContext(ctx, cfg.Amtsbote, "demo", "--database-url", cfg.DatabaseURL,
		"--data-dir", filepath.Join(cfg.Dir, "demo"), "--public-url", c.PublicURL, "--nats-url", c.NATSURL)
	if out, err := seed.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("amtsbote demo: %w\n%s", err, out)
	}
	c.Demo = filepath.Join(cfg.Dir, "demo", "demo.json")

	// The first role creates the streams and buckets; the others find
	// them. Ensure is idempotent, so the order only spares the cluster a
	// race of identical creations.
	fmt.Fprintf(cfg.Log, "starting the roles…\n")
	for i, r := range roleList {
		args := []string{"serve", "--target=" + r.target,
			"--listen", net.JoinHostPort(cfg.Host, strconv.Itoa(c.Ports.Roles[r.name])),
			"--public-url", c.PublicURL, "--nats-url", c.NATSURL, "--database-url", cfg.DatabaseURL,
			"--signing-key", key, "--replicas", strconv.Itoa(cfg.Replicas),
			// Every request reaches the gateways from the load balancer's
			// address; its per-address limits would count all clients as one.
			"--routes-rate", "1e6", "--routes-burst", "1000000", "--public-rate", "1e6", "--public-burst", "1000000",
		}
		p := c.process(r.name, cfg.Amtsbote, args)
		c.mu.Lock()
		c.roles[r.name] = p
		c.mu.Unlock()
		if err := p.start(); err != nil {
			return nil, err
		}
		if i == 0 {
			if err := c.waitHealthy(ctx, r.name, 90*time.Second); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range roleList {
		if err := c.waitHealthy(ctx, r.name, 90*time.Second); err != nil {
			return nil, err
		}
	}
	var backends []string
	for _, r := range roleList {
		if r.target == "gateway" {
			backends = append(backends, fmt.Sprintf("http://%s:%d", cfg.Host, c.Ports.Roles[r.name]))
		}
	}
	f, err := startFront(net.JoinHostPort(cfg.Host, strconv.Itoa(c.Ports.Front)), backends)
	if err != nil {
		return nil, err
	}
	c.front = f
	if cfg.SubscriberConfig != "" {
		if err := c.StartSubscriber(ctx, cfg.SubscriberConfig); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// subscriberName is the subscriber's process name, for KillRole and
// StartRole.
const subscriberName = "subscriber"

// StartSubscriber runs amtsbote subscriber --config file, the process
// named "subscriber", and waits until it answers /healthz. A test whose
// configuration needs the demo's destinations and clients starts it
// after Start.
func (c *Cluster) StartSubscriber(ctx context.Context, file string) error {
	c.mu.Lock()
	if _, ok := c.roles[subscriberName]; ok {
		c.mu.Unlock()
		return errors.New("the subscriber runs already")
	}
	c.cfg.SubscriberConfig = file
	p := c.process(subscriberName, c.cfg.Amtsbote, []string{"subscriber", "--config", file,
		"--listen", net.JoinHostPort(c.cfg.Host, strconv.Itoa(c.Ports.Subscriber))})
	c.roles[subscriberName] = p
	c.mu.Unlock()
	if err := p.start(); err != nil {
		return err
	}
	return c.waitHealthy(ctx, subscriberName, 90*time.Second)
}

// KillRole ends the role process name (gateway-1, router-2, subscriber…)
// with SIGKILL and waits for its exit: no draining, no goodbye, like a
// machine that fails.
func (c *Cluster) KillRole(name string) error {
	p, err := c.role(name)
	if err != nil {
		return err
	}
	return p.kill()
}

// StartRole starts the role process name again, with the arguments it
// first ran with, and waits until it answers /healthz.
func (c *Cluster) StartRole(ctx context.Context, name string) error {
	p, err := c.role(name)
	if err != nil {
		return err
	}
	if !p.exited() {
		return fmt.Errorf("%s is running", name)
	}
	if err := p.start(); err != nil {
		return err
	}
	return c.waitHealthy(ctx, name, 90*time.Second)
}

// process is a child process of the cluster, logging into logs/name.log.
func (c *Cluster) process(name, bin string, args []string) *Process {
	p := newProcess(name, bin, args, filepath.Join(c.cfg.Dir, "logs", name+".log"), c.cfg.Log)
	p.restart = c.cfg.Restart
	return p
}

func (c *Cluster) role(name string) (*Process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.roles[name]
	if !ok {
		return nil, fmt.Errorf("no role process %q", name)
	}
	return p, nil
}

// nodeName is the server_name of node i, stable across restarts.
func nodeName(i int) string { return "amtsbote-" + strconv.Itoa(i+1) }

// writeNodeConfig writes node i's configuration. sync_interval: always
// makes every node fsync each write before it acknowledges, which EVENTS,
// the legal evidence, needs; NATS sets it per server, not per stream.
func (c *Cluster) writeNodeConfig(i int) error {
	var routes []string
	for j := range 3 {
		routes = append(routes, fmt.Sprintf("    nats-route://%s:%d", c.cfg.Host, c.Ports.Routes[j]))
	}
	conf := fmt.Sprintf(`server_name: %s
listen: %s:%d
http: %s:%d
max_payload: 1MB
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: amtsbote
  listen: %s:%d
  routes: [
%s
  ]
}
`, nodeName(i), c.cfg.Host, c.Ports.NATS[i], c.cfg.Host, c.Ports.Monitor[i],
		filepath.Join(c.cfg.Dir, "nats", nodeName(i)), c.cfg.Host, c.Ports.Routes[i], strings.Join(routes, "\n"))
	return os.WriteFile(c.nodeConfig(i), []byte(conf), 0o600)
}

func (c *Cluster) nodeConfig(i int) string {
	return filepath.Join(c.cfg.Dir, nodeName(i)+".conf")
}

// StartNode starts NATS node i (again), on the same store.
func (c *Cluster) StartNode(ctx context.Context, i int) error {
	p := c.process(nodeName(i), c.cfg.NATSServer, []string{"-c", c.nodeConfig(i)})
	c.mu.Lock()
	c.nodes[i] = p
	c.mu.Unlock()
	if err := p.start(); err != nil {
		return err
	}
	return eventually(ctx, 30*time.Second, func() error {
		resp, err := healthClient.Get(fmt.Sprintf("http://%s:%d/healthz", c.cfg.Host, c.Ports.Monitor[i]))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// KillNode ends NATS node i with SIGKILL: no goodbye to its peers and
// clients, like a machine that fails.
func (c *Cluster) KillNode(i int) error {
	c.mu.Lock()
	p := c.nodes[i]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("node %d not running", i)
	}
	return p.kill()
}

// NodeIndex returns the index of the node with server name name.
func NodeIndex(name string) (int, error) {
	for i := range 3 {
		if nodeName(i) == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("no node %q", name)
}

// NodeURL is node i's client URL.
func (c *Cluster) NodeURL(i int) string {
	return fmt.Sprintf("nats://%s:%d", c.cfg.Host, c.Ports.NATS[i])
}

// Processes returns the PIDs of every running process by name.
func (c *Cluster) Processes() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, p := range append(c.nodes[:], mapValues(c.roles)...) {
		if p != nil {
			if pid := p.pid(); pid > 0 {
				out[p.name] = pid
			}
		}
	}
	return out
}

func mapValues(m map[string]*Process) []*Process {
	var out []*Process
	for _, p := range m {
		out = append(out, p)
	}
	return out
}

// waitJetStream waits until the three nodes have a JetStream meta leader
// and every stream a leader.
func (c *Cluster) waitJetStream(ctx context.Context, d time.Duration) error {
	nc, err := nats.Connect(c.NATSURL, nats.Name("amtsbote cluster"))
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// On a second start the streams of the first are back only once
	// each has elected a leader; a role's start would time out before.
	return eventually(ctx, d, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := js.AccountInfo(cctx); err != nil {
			return err
		}
		names := js.StreamNames(cctx)
		for name := range names.Name() {
			st, err := js.Stream(cctx, name)
			if err != nil {
				return err
			}
			if ci := st.CachedInfo().Cluster; ci == nil || ci.Leader == "" {
				return fmt.Errorf("stream %s has no leader yet", name)
			}
		}
		return names.Err()
	})
}

// waitHealthy waits until role name answers /healthz.
func (c *Cluster) waitHealthy(ctx context.Context, name string, d time.Duration) error {
	port := c.Ports.Roles[name]
	if name == subscriberName {
		port = c.Ports.Subscriber
	}
	u := fmt.Sprintf("http://%s:%d/healthz", c.cfg.Host, port)
	c.mu.Lock()
	p := c.roles[name]
	c.mu.Unlock()
	err := eventually(ctx, d, func() error {
		if p.exited() {
			return errExited
		}
		resp, err := healthClient.Get(u)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s did not come up (log %s): %w", name, p.logPath, err)
	}
	return nil
}

var errExited = errors.New("process exited")

// healthClient asks for /healthz; a process that accepts and does not
// answer is not healthy.
var healthClient = &http.Client{Timeout: 2 * time.Second}

// signingKey returns the file of Amtsbote's signing key, generated on the
// first start with the amtsbote command itself.
func (c *Cluster) signingKey(ctx context.Context) (string, error) {
	dir := filepath.Join(c.cfg.Dir, "keys")
	path := filepath.Join(dir, "amtsbote.private.jwk.json")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Fprintf(c.cfg.Log, "generating Amtsbote's signing key…\n")
	out, err := exec.CommandContext(ctx, c.cfg.Amtsbote, "keys", "generate", "--purpose", "signing", "--kid", "amtsbote", "--out", dir).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("amtsbote keys generate: %w\n%s", err, out)
	}
	return path, nil
}

// Stop ends the roles (SIGTERM, so they drain), then the NATS nodes, and
// waits for them; what does not end within 15 seconds is killed.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	roles := mapValues(c.roles)
	nodes := slices.Clone(c.nodes[:])
	c.mu.Unlock()
	if c.front != nil {
		c.front.close()
	}
	stopAll(roles)
	stopAll(nodes)
}

func stopAll(ps []*Process) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(15 * time.Second)
		}()
	}
	wg.Wait()
}

// Print writes where each part listens and the demo credentials.
func (c *Cluster) Print(w io.Writer) error {
	fmt.Fprintf(w, "\nAmtsbote cluster is running (Ctrl-C stops it).\n\n")
	fmt.Fprintf(w, "  public URL   %s  (load balancer over gateway-1 and gateway-2)\n", c.PublicURL)
	pids := c.Processes()
	for i := range 3 {
		fmt.Fprintf(w, "  %-12s nats://%s:%d  route %d  monitor http://%s:%d  pid %d\n", nodeName(i),
			c.cfg.Host, c.Ports.NATS[i], c.Ports.Routes[i], c.cfg.Host, c.Ports.Monitor[i], pids[nodeName(i)])
	}
	for _, r := range roleList {
		fmt.Fprintf(w, "  %-12s http://%s:%d  (serve --target=%s)  pid %d\n", r.name, c.cfg.Host, c.Ports.Roles[r.name], r.target, pids[r.name])
	}
	if pid, ok := pids["subscriber"]; ok {
		fmt.Fprintf(w, "  %-12s http://%s:%d  (subscriber --config %s)  pid %d\n", "subscriber", c.cfg.Host, c.Ports.Subscriber, c.cfg.SubscriberConfig, pid)
	} else {
		fmt.Fprintf(w, "  %-12s not started: give -subscriber-config FILE to run amtsbote subscriber --config FILE\n", "subscriber")
	}
	fmt.Fprintf(w, "  %-12s %s\n  %-12s %s\n  %-12s %s\n", "postgres", maskURL(c.cfg.DatabaseURL), "logs", filepath.Join(c.cfg.Dir, "logs"), "demo", c.Demo)
	raw, err := os.ReadFile(c.Demo)
	if err != nil {
		return err
	}
	var d struct {
		Clients []struct {
			Role, ClientID, ClientSecret string
			Scopes                       []string
		}
		Destinations []struct {
			DestinationID, Name, Level, Region string
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("read %s: %w", c.Demo, err)
	}
	fmt.Fprintln(w)
	for _, cl := range d.Clients {
		fmt.Fprintf(w, "  %-8s client_id=%s\n           client_secret=%s\n           scopes=%s\n", cl.Role, cl.ClientID, cl.ClientSecret, strings.Join(cl.Scopes, " "))
	}
	fmt.Fprintln(w)
	for _, dest := range d.Destinations {
		fmt.Fprintf(w, "  destination %s  %s (%s, %s)\n", dest.DestinationID, dest.Name, dest.Level, dest.Region)
	}
	fmt.Fprintf(w, "\nLoad it:\n  go run ./loadtest run -base-url %s -demo %s -nats-url %s\n\n", c.PublicURL, c.Demo, c.NATSURL)
	return nil
}

func maskURL(s string) string { return redact.DSN(s, "xxxxx") }

// createDatabase creates the database named in dbURL, connecting to the
// server's postgres database, unless it exists.
func createDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return fmt.Errorf("database url %s names no database", maskURL(dbURL))
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops the database named in dbURL if it exists.
func DropDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// eventually calls f until it returns nil or d has passed.
func eventually(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if errors.Is(err, errExited) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// signalStop asks a process to end.
var signalStop = syscall.SIGTERM
