package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures a NATS server with JetStream running inside the
// process.
type EmbeddedConfig struct {
	// Dir is where JetStream stores streams; required. A server started again
	// on the same Dir finds its streams and messages.
	Dir string
	// Host to listen on; empty means 127.0.0.1.
	Host string
	// Port to listen on; 0 or -1 picks a free port. The caller chooses a
	// fixed port for dev (not 4222, so a system NATS can run beside it).
	Port int
	// ServerName names the server; required in a cluster and stable across
	// restarts of a cluster node. Empty lets the server choose.
	ServerName string
	// Cluster, when set, joins the server to a JetStream cluster.
	Cluster *ClusterConfig
	// SyncAlways makes the store fsync every write, as legal evidence in
	// clustered production wants (sync_interval: always); slower.
	SyncAlways bool
	// MaxPayload bounds a message's size in bytes; 0 keeps the server
	// default (1 MiB). Larger content belongs in the object store.
	MaxPayload int32
	// ReadyTimeout bounds the wait for the server to accept connections;
	// 0 means 10 seconds.
	ReadyTimeout time.Duration
	// Logger receives the server's log at matching levels; nil silences it.
	Logger *slog.Logger
	// Users, when set, make the server require a user and password; each
	// gets its permissions. Without them anyone may connect and do anything.
	Users []User
}

// User is a NATS user of an embedded server.
type User struct {
	Name     string
	Password string
	// Permissions limit the user; nil allows everything, as Amtsbote's
	// own roles need.
	Permissions *Permissions
}

// Permissions are the subjects a user may publish and subscribe to.
type Permissions struct {
	Publish, Subscribe []string
}

// SubscriberInboxPrefix is the reply-subject prefix of a subscriber with
// the durable consumer durable: its requests' answers, the messages of its
// pulls included, come there, and only it may subscribe to it.
func SubscriberInboxPrefix(durable string) string { return "_INBOX_" + durable }

// SubscriberReasons are the dead-letter reasons a subscriber may write.
var SubscriberReasons = []string{ReasonMaxDeliver, ReasonMalformedEvent, ReasonPermanent, "sink-refused", "subscriber-malformed"}

// SubscriberPermissions are the permissions of an authority's subscriber
// that consumes the INBOX durable durable, which an operator created with
// its filter subjects: it may look up and pull from that consumer, ack its
// messages, write dead letters, and receive answers on its own inbox
// prefix (SubscriberInboxPrefix). It can neither create nor change a
// consumer, so it cannot widen its filter, nor read any stream directly.
func SubscriberPermissions(durable string) *Permissions {
	pub := []string{
		"$JS.API.INFO",
		"$JS.API.CONSUMER.INFO." + StreamInbox + "." + durable,
		"$JS.API.CONSUMER.MSG.NEXT." + StreamInbox + "." + durable,
		"$JS.ACK." + StreamInbox + "." + durable + ".>",
	}
	for _, r := range SubscriberReasons {
		pub = append(pub, PrefixDead+"."+r)
	}
	return &Permissions{Publish: pub, Subscribe: []string{SubscriberInboxPrefix(durable) + ".>"}}
}

// ClusterConfig joins an embedded server to a cluster.
type ClusterConfig struct {
	// Name of the cluster; the same on every node.
	Name string
	// Host and Port of the route listener; Port 0 or -1 picks a free port.
	Host string
	Port int
	// Routes are the other nodes' route URLs (nats-route://host:port).
	Routes []string
}

// RunEmbedded starts a NATS server with JetStream storing in cfg.Dir and
// waits until it accepts connections. Stop it with Shutdown followed by
// WaitForShutdown, which leaves the store ready for the next start.
func RunEmbedded(cfg EmbeddedConfig) (*server.Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, fmt.Errorf("run embedded nats: %w", err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("run embedded nats: %w", err)
	}
	if cfg.Logger != nil {
		s.SetLoggerV2(slogAdapter{l: cfg.Logger}, true, false, false)
	}
	s.Start()
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if !s.ReadyForConnections(timeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("run embedded nats: not ready within %s", timeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("run embedded nats: jetstream did not start")
	}
	return s, nil
}

// options translates the config into server options.
func (cfg EmbeddedConfig) options() (*server.Options, error) {
	if cfg.Dir == "" {
		return nil, errors.New("dir is required")
	}
	opts := &server.Options{
		ServerName:             cfg.ServerName,
		Host:                   cfg.Host,
		Port:                   cfg.Port,
		JetStream:              true,
		StoreDir:               cfg.Dir,
		SyncAlways:             cfg.SyncAlways,
		MaxPayload:             cfg.MaxPayload,
		NoSigs:                 true,
		NoLog:                  cfg.Logger == nil,
		DisableJetStreamBanner: true,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	for _, u := range cfg.Users {
		if u.Name == "" || u.Password == "" {
			return nil, errors.New("a user needs a name and a password")
		}
		su := &server.User{Username: u.Name, Password: u.Password}
		if p := u.Permissions; p != nil {
			su.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: p.Publish},
				Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
			}
		}
		opts.Users = append(opts.Users, su)
	}
	if c := cfg.Cluster; c != nil {
		if c.Name == "" {
			return nil, errors.New("cluster name is required")
		}
		if cfg.ServerName == "" {
			return nil, errors.New("server name is required in a cluster")
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
		if opts.Cluster.Host == "" {
			opts.Cluster.Host = opts.Host
		}
		if opts.Cluster.Port == 0 {
			opts.Cluster.Port = server.RANDOM_PORT
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("cluster route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	return opts, nil
}

// slogAdapter writes the server's log through slog. Traces go to debug.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.log(slog.LevelInfo, format, v) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log(slog.LevelWarn, format, v) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log(slog.LevelDebug, format, v) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log(slog.LevelDebug, format, v) }

func (a slogAdapter) log(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	a.l.Log(ctx, level, fmt.Sprintf(format, v...), "component", "nats-server")
}
