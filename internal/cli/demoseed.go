package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/amtsbote/amtsbote/pkg/registry"
)

// runDemo seeds the demo areas, destinations and clients that dev creates
// into an external store, for a system run with serve (make cluster). A
// second run against the same store and data dir keeps what exists and
// only updates the URLs in demo.json.
func runDemo(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	dataDir := fs.String("data-dir", env.str("AMTSBOTE_DATA_DIR", "./data"), "directory for the demo destinations' private keys and demo.json (AMTSBOTE_DATA_DIR)")
	databaseURL := fs.String("database-url", env.str("AMTSBOTE_DATABASE_URL", ""), "PostgreSQL URL (AMTSBOTE_DATABASE_URL, required)")
	publicURL := fs.String("public-url", env.str("AMTSBOTE_PUBLIC_URL", ""), "base URL clients use, written to demo.json (AMTSBOTE_PUBLIC_URL, required)")
	natsURL := fs.String("nats-url", env.str("AMTSBOTE_NATS_URL", "nats://127.0.0.1:4222"), "NATS URLs written to demo.json (AMTSBOTE_NATS_URL)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *databaseURL == "" || *publicURL == "" {
		return badUsage(errors.New("demo needs --database-url and --public-url"))
	}
	base := strings.TrimRight(*publicURL, "/")
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, storeName, err := openStore(ctx, *databaseURL, "")
	if err != nil {
		return err
	}
	defer st.Close()
	if err := seedDemoAreas(ctx, st); err != nil {
		return err
	}
	demo, err := loadDemo(ctx, st, *dataDir)
	if err != nil {
		return err
	}
	if demo == nil {
		fmt.Fprintln(stdout, "creating demo destinations and clients (generating RSA-4096 keys)…")
		reg, err := registry.New(registry.Config{Store: st, Reference: st, Logger: slog.New(slog.NewTextHandler(stderr, nil))})
		if err != nil {
			return err
		}
		if demo, err = createDemo(ctx, reg, *dataDir, base, *natsURL); err != nil {
			return err
		}
		// --nats-url only goes into demo.json: processes already running
		// learn of the destinations from the store.
		fmt.Fprintln(stderr, "not announced: running Amtsbote processes pick the demo destinations up at their next reload from the store, within 5 minutes")
	} else if demo.BaseURL != base || demo.NATSURL != *natsURL {
		demo.BaseURL, demo.TokenURL, demo.NATSURL = base, base+"/token", *natsURL
		if err := writeDemo(*dataDir, demo); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "demo in %s (%s): %d destinations, %d clients\n", filepath.Join(*dataDir, "demo.json"), storeName, len(demo.Destinations), len(demo.Clients))
	return nil
}
