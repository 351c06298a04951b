package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

// storeFlags are the flags every operator command uses to reach the store.
type storeFlags struct {
	dataDir, databaseURL string
	actor                string // who the audit log names for a change
}

func (s *storeFlags) register(fs *flag.FlagSet, env envReader) {
	fs.StringVar(&s.dataDir, "data-dir", env.str("AMTSBOTE_DATA_DIR", "./data"), "data dir holding the SQLite store (AMTSBOTE_DATA_DIR)")
	fs.StringVar(&s.databaseURL, "database-url", env.str("AMTSBOTE_DATABASE_URL", ""), "PostgreSQL URL; empty uses SQLite in the data dir (AMTSBOTE_DATABASE_URL)")
	fs.StringVar(&s.actor, "actor", env.str("USER", "cli"), "who the audit log names for a change: $USER, else cli")
}

// open opens the installation's store. Unlike dev, an operator command
// never makes a SQLite store: a wrong --data-dir would write the command's
// changes and audit records into a new file the installation never reads.
func (s *storeFlags) open(ctx context.Context) (roles.Store, error) {
	if isPostgresURL(s.databaseURL) {
		return postgres.OpenExisting(ctx, s.databaseURL)
	}
	if s.databaseURL == "" {
		path := filepath.Join(s.dataDir, "amtsbote.db")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no store at %s: give the running installation's --data-dir or --database-url", path)
		}
	}
	st, _, err := openStore(ctx, s.databaseURL, s.dataDir)
	return st, err
}

// clientRegistry opens the store for the client commands, which need no
// routing table, and returns the registry over it and how to close it.
func (s *storeFlags) clientRegistry(ctx context.Context) (*registry.Registry, func(), error) {
	st, err := s.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	reg, err := registry.New(registry.Config{Store: st})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return reg, func() { st.Close() }, nil
}

// sameInstallation refuses a store and a bus that belong to different
// installations (each records the id of its installation; see roles). An
// installation's first process records its id in both, so one of them
// without an id was never used by the other's processes; both without one
// are an installation set up before its first start.
func sameInstallation(ctx context.Context, b *bus.Bus, st store.Store) error {
	busID, _, err := b.Installation(ctx)
	if err != nil {
		return err
	}
	storeID, _, err := st.Installation(ctx)
	if err != nil {
		return err
	}
	switch {
	case busID == storeID:
		return nil
	case storeID == "":
		return fmt.Errorf("the NATS servers belong to installation %s and the store to none: no process of that installation has used this store; "+
			"give the store and NATS URL of one installation (or start its processes once, which records the id in both)", busID)
	case busID == "":
		return fmt.Errorf("the store belongs to installation %s and the NATS servers to none: no process of that installation has used these servers; "+
			"give the store and NATS URL of one installation (or start its processes once, which records the id in both)", storeID)
	}
	return fmt.Errorf("the store belongs to installation %s and the NATS servers to installation %s: give the store and NATS URL of one installation", storeID, busID)
}

// parseAnyOrder parses args with fs, flags and arguments in any order, and
// returns the arguments.
func parseAnyOrder(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, flagError(err)
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func runDestination(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	const usage = "usage: amtsbote destination create --file F | list\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	var sf storeFlags
	switch args[0] {
	case "create":
		fs := newFlagSet("destination create", stderr)
		sf.register(fs, env)
		natsURL := fs.String("nats-url", env.str("AMTSBOTE_NATS_URL", ""), "announce the destination's routes to the processes on this NATS (AMTSBOTE_NATS_URL); empty announces nothing")
		file := fs.String("file", "", "JSON file in FIT-Connect's CreateDestination form, with optional destinationId, homeRegion and status ('-' reads standard input)")
		allowFlag := callbackAllowFlag(fs, env)
		if err := fs.Parse(args[1:]); err != nil {
			return flagError(err)
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		allow, err := parseNetworks(*allowFlag)
		if err != nil {
			return badUsage(err)
		}
		if *file == "" {
			fmt.Fprintln(stderr, "destination create: --file is required")
			return ErrUsage
		}
		raw, err := readInput(*file)
		if err != nil {
			return err
		}
		dest, keys, err := registry.ParseDestination(raw)
		if err != nil {
			return fmt.Errorf("destination %s: %w", *file, err)
		}
		st, err := sf.open(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		return createDestination(ctx, st, sf.actor, *natsURL, allow, dest, keys, stdout, stderr)
	case "list":
		st, err := openForListing(ctx, "destination list", args[1:], env, stderr)
		if err != nil {
			return err
		}
		defer st.Close()
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tNAME\tHOME\tSERVICES")
		for offset := 0; ; {
			list, total, err := st.Destinations(ctx, store.Page{Limit: 500, Offset: offset})
			if err != nil {
				return fmt.Errorf("list destinations: %w", err)
			}
			for _, d := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", d.ID, d.Status, d.Contact.LegalName, d.HomeRegion, len(d.Services))
			}
			offset += len(list)
			if len(list) == 0 || offset >= total {
				break
			}
		}
		return tw.Flush()
	default:
		fmt.Fprintf(stderr, "unknown destination command %q: want create or list\n", args[0])
		return ErrUsage
	}
}

func runClient(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	const usage = `usage: amtsbote client create --name N --scope S [--scope S]...
       amtsbote client list
       amtsbote client disable|enable|rotate-secret ID
disable: the client's secret and, within seconds, its tokens are refused;
enable undoes it (tokens not yet expired work again). rotate-secret: a new
secret, printed once; the old one and, within seconds, the tokens it got are
refused: after a leak, rotate.
`
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if len(args) > 0 {
		switch args[0] {
		case "disable", "enable", "rotate-secret":
			return changeClient(ctx, args[0], args[1:], env, stdout, stderr, usage)
		case "list":
			return listClients(ctx, args[1:], env, stdout, stderr)
		}
	}
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	var sf storeFlags
	var scopes multiFlag
	fs := newFlagSet("client create", stderr)
	sf.register(fs, env)
	name := fs.String("name", "", "a name for the client (required)")
	fs.Var(&scopes, "scope", "a scope, e.g. send:region:DE08, subscribe:destination:<id>, amtsbote:admin (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return flagError(err)
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *name == "" || len(scopes) == 0 {
		fmt.Fprintln(stderr, "client create: --name and at least one --scope are required")
		return ErrUsage
	}
	reg, closeStore, err := sf.clientRegistry(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	c, secret, err := reg.CreateClient(ctx, sf.actor, registry.ClientInput{Name: *name, Scopes: scopes})
	if p := (*problem.Problem)(nil); errors.As(err, &p) && p.Status == http.StatusBadRequest {
		// The flags are all its input: a value refused is a usage error.
		return badUsage(fmt.Errorf("create client: %w", err))
	}
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"clientId": c.ID, "clientSecret": secret, "scopes": c.Scopes,
	})
}

// openForListing reads a listing command's store flags, which are all it
// takes, and opens the store.
func openForListing(ctx context.Context, cmd string, args []string, env envReader, stderr io.Writer) (store.Store, error) {
	var sf storeFlags
	fs := newFlagSet(cmd, stderr)
	sf.register(fs, env)
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	if err := noArgs(fs); err != nil {
		return nil, err
	}
	return sf.open(ctx)
}

// listClients prints the clients, without secrets.
func listClients(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	st, err := openForListing(ctx, "client list", args, env, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := st.Clients(ctx)
	if err != nil {
		return fmt.Errorf("list clients: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tDISABLED\tCREATED\tSCOPES")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", c.ID, c.Name, c.Disabled, c.CreatedAt.UTC().Format(time.RFC3339), strings.Join(c.Scopes, " "))
	}
	return tw.Flush()
}

// changeClient disables, enables or gives a new secret to the client
// named in args.
func changeClient(ctx context.Context, cmd string, args []string, env envReader, stdout, stderr io.Writer, usage string) error {
	var sf storeFlags
	fs := newFlagSet("client "+cmd, stderr)
	sf.register(fs, env)
	ids, err := parseAnyOrder(fs, args)
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		fmt.Fprintf(stderr, "client %s: want exactly one client ID, got %d\n%s", cmd, len(ids), usage)
		return ErrUsage
	}
	reg, closeStore, err := sf.clientRegistry(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	var (
		c      store.Client
		secret string
	)
	if cmd == "rotate-secret" {
		c, secret, err = reg.RotateClientSecret(ctx, sf.actor, ids[0])
	} else {
		c, err = reg.SetClientDisabled(ctx, sf.actor, ids[0], cmd == "disable")
	}
	if err != nil {
		return fmt.Errorf("client %s %s: %w", cmd, ids[0], err)
	}
	out := map[string]any{"clientId": c.ID, "disabled": c.Disabled, "scopes": c.Scopes}
	if secret != "" {
		out["clientSecret"] = secret
	}
	return json.NewEncoder(stdout).Encode(out)
}

func runKeys(_ context.Context, args []string, _ envReader, stdout, stderr io.Writer) error {
	const usage = "usage: amtsbote keys generate --purpose encryption|signing [--kid K] --out DIR\n"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if len(args) == 0 || args[0] != "generate" {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	fs := newFlagSet("keys generate", stderr)
	purpose := fs.String("purpose", "", "encryption (RSA-OAEP-256, wrapKey) or signing (PS512, verify)")
	kid := fs.String("kid", "", "key id, 8 to 64 characters; default a new UUID")
	cn := fs.String("cn", "Amtsbote test key", "common name of the self-signed certificate")
	out := fs.String("out", ".", "directory to write <kid>.private.jwk.json and <kid>.public.jwk.json to")
	if err := fs.Parse(args[1:]); err != nil {
		return flagError(err)
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	p := jose.Purpose(*purpose)
	if p != jose.Encryption && p != jose.Signing {
		fmt.Fprintf(stderr, "keys generate: --purpose must be encryption or signing, got %q\n", *purpose)
		return ErrUsage
	}
	if *kid == "" {
		*kid = uuid.NewString()
	}
	kp, err := jose.GenerateKeyPair(p, *kid, *cn)
	if err != nil {
		return err
	}
	pub, err := kp.PublicJSON()
	if err != nil {
		return err
	}
	privPath := filepath.Join(*out, *kid+".private.jwk.json")
	if _, err := os.Stat(privPath); err == nil {
		return fmt.Errorf("%s exists; not overwriting a private key", privPath)
	}
	if err := writePrivateKey(privPath, kp); err != nil {
		return err
	}
	pubPath := filepath.Join(*out, *kid+".public.jwk.json")
	if err := os.WriteFile(pubPath, append(pub, '\n'), 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	fmt.Fprintf(stdout, "kid %s\nprivate %s\npublic  %s\n", *kid, privPath, pubPath)
	return nil
}

func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	}
	raw, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such file", name)
	}
	return raw, err
}

// createDestination creates d through the registry operation the admin
// API uses: conflicting routes are refused, the audit log records it and,
// with a NATS URL, the running processes learn its routes.
func createDestination(ctx context.Context, st roles.Store, actor, natsURL string, allow []netip.Prefix, d store.Destination, keys []store.Key, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var b *bus.Bus
	if natsURL != "" {
		var err error
		if b, err = connectTopology(ctx, natsURL); err != nil {
			return err
		}
		defer b.Close()
		if err := sameInstallation(ctx, b, st); err != nil {
			return err
		}
	}
	routes, err := routesync.New(routesync.Config{Store: st, Bus: b})
	if err != nil {
		return err
	}
	if err := routes.Load(ctx); err != nil {
		return fmt.Errorf("load routing table: %w", err)
	}
	if b != nil {
		go func() { _ = routes.Run(ctx) }() // follows the registry until the command ends
	}
	reg, err := registry.New(registry.Config{Store: st, Reference: st, Routes: routes, Logger: slog.New(slog.NewTextHandler(stderr, nil)), CallbackAllow: allow})
	if err != nil {
		return err
	}
	c, err := reg.CreateDestination(ctx, actor, d, keys)
	if err != nil {
		return fmt.Errorf("destination %s: %w", d.ID, err)
	}
	fmt.Fprintln(stdout, d.ID)
	if b == nil {
		fmt.Fprint(stderr, notAnnounced)
		return nil
	}
	if c.Revision == 0 {
		return fmt.Errorf("destination %s created, but not announced", d.ID)
	}
	fmt.Fprintf(stderr, "announced at registry revision %d\n", c.Revision)
	return nil
}

// connectTopology connects to NATS at url and makes sure the streams
// exist, with one replica where they do not yet (Ensure never lowers a
// cluster's).
func connectTopology(ctx context.Context, url string) (*bus.Bus, error) {
	b, err := bus.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		b.Close()
		return nil, fmt.Errorf("streams: %w", err)
	}
	return b, nil
}
