package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
)

const importUsage = `usage: amtsbote import gv100ad|leika|plz [flags] FILE
  gv100ad  the Destatis municipality directory (GV100AD, fixed width)
  leika    the LeiKa service catalogue as CSV (leika_key,name,...)
  plz      postcodes as CSV (plz,ags,ars,name,...)
`

// notAnnounced tells an operator who gave no --nats-url when the running
// processes see a registry change: at their periodic reload (routesync's
// resync, every 5 minutes in serve and dev).
const notAnnounced = "not announced (no --nats-url): running Amtsbote processes pick the change up at their next reload from the store, within 5 minutes\n"

// runImport imports a reference data file into the store in one
// transaction. A bad line aborts with its number and changes nothing; a
// repeated import changes nothing either. With --nats-url the running
// processes are told to reload.
func runImport(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, importUsage)
		return ErrUsage
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, importUsage)
		return nil
	}
	kind := args[0]
	switch kind {
	case "gv100ad", "leika", "plz":
	default:
		fmt.Fprintf(stderr, "unknown import %q\n%s", kind, importUsage)
		return ErrUsage
	}
	var sf storeFlags
	fs := newFlagSet("import "+kind, stderr)
	sf.register(fs, env)
	natsURL := fs.String("nats-url", env.str("AMTSBOTE_NATS_URL", ""), "announce the import to the processes on this NATS (AMTSBOTE_NATS_URL); empty announces nothing")
	files, err := parseAnyOrder(fs, args[1:])
	if err != nil {
		return err
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "import %s: want exactly one FILE, got %d arguments\n%s", kind, len(files), importUsage)
		return ErrUsage
	}
	name := files[0]
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("import %s: %s: no such file", kind, name)
		}
		return fmt.Errorf("import %s: %w", kind, err)
	}
	defer f.Close()

	// Parse first: a bad file never opens the store.
	start := time.Now()
	var (
		dir      *ars.Directory
		services []leika.Service
		codes    []ars.PostalCode
	)
	switch kind {
	case "gv100ad":
		dir, err = ars.ParseGV100AD(f)
	case "leika":
		services, err = leika.ParseCatalogue(f)
	case "plz":
		codes, err = ars.ParsePLZ(f)
	}
	if err != nil {
		return fmt.Errorf("import %s %s: %w", kind, name, err)
	}

	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg := registry.Config{Store: st, Reference: st, Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	if *natsURL != "" {
		b, err := connectTopology(ctx, *natsURL)
		if err != nil {
			return fmt.Errorf("import %s: %w", kind, err)
		}
		defer b.Close()
		if err := sameInstallation(ctx, b, st); err != nil {
			return fmt.Errorf("import %s: %w", kind, err)
		}
		cfg.References = routesync.Announcer{Bus: b}
	}
	reg, err := registry.New(cfg)
	if err != nil {
		return err
	}
	var (
		summary string
		rev     uint64
	)
	switch kind {
	case "gv100ad":
		res, err := reg.ImportAreas(ctx, sf.actor, dir)
		if err != nil {
			return fmt.Errorf("import gv100ad %s: %w", name, err)
		}
		r := res.Result
		rev = res.Revision
		summary = fmt.Sprintf("gv100ad Gebietsstand %s: %d areas, %d added, %d updated, %d restored, %d retired, %d unchanged",
			r.Stand.Format(time.DateOnly), r.Areas, r.Added, r.Updated, r.Restored, r.Retired, r.Unchanged)
	case "leika":
		res, err := reg.ImportCatalogue(ctx, sf.actor, services)
		if err != nil {
			return fmt.Errorf("import leika %s: %w", name, err)
		}
		r := res.Result
		rev = res.Revision
		summary = fmt.Sprintf("leika: %d services, %d added, %d updated, %d unchanged", r.Services, r.Added, r.Updated, r.Unchanged)
	case "plz":
		res, err := reg.ImportPostcodes(ctx, sf.actor, codes)
		if err != nil {
			return fmt.Errorf("import plz %s: %w", name, err)
		}
		rev = res.Revision
		summary = fmt.Sprintf("plz: %d rows (previously %d)", res.Result.Rows, res.Result.Previous)
	}
	fmt.Fprintf(stdout, "%s in %s\n", summary, time.Since(start).Round(time.Millisecond))
	if *natsURL == "" {
		fmt.Fprint(stderr, notAnnounced)
	} else {
		if rev == 0 {
			return fmt.Errorf("import %s: imported, but not announced", kind)
		}
		fmt.Fprintf(stdout, "announced at registry revision %d\n", rev)
	}
	return nil
}

// runCoverage reports, per Land, how many Gemeinden and inhabitants
// resolve to a destination for a service, and with --uncovered which
// Gemeinden do not.
func runCoverage(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	var sf storeFlags
	fs := newFlagSet("coverage", stderr)
	sf.register(fs, env)
	key := fs.String("leika", "", "LeiKa key of the service, 14 digits (required)")
	atFlag := fs.String("at", "", "the time to resolve at, RFC 3339; default now")
	uncovered := fs.Bool("uncovered", false, "list the Gemeinden without a destination")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *key == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: amtsbote coverage --leika KEY [--at TIME] [--uncovered] [--json]")
		return ErrUsage
	}
	service, err := leika.ParseKey(*key)
	if err != nil {
		return badUsage(fmt.Errorf("coverage: --leika: %w", err))
	}
	at := time.Now().UTC()
	if *atFlag != "" {
		if at, err = time.Parse(time.RFC3339, *atFlag); err != nil {
			return badUsage(fmt.Errorf("coverage: --at %q is not an RFC 3339 time", *atFlag))
		}
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	var ref store.Reference = st
	reg, err := routesync.New(routesync.Config{Store: ref})
	if err != nil {
		return err
	}
	if err := reg.Load(ctx); err != nil {
		return fmt.Errorf("coverage: %w", err)
	}
	c, err := reg.Coverage(ctx, string(service), at)
	if errors.Is(err, routesync.ErrNoDirectory) {
		return errors.New("coverage: no area directory imported; run 'amtsbote import gv100ad FILE' first")
	}
	if err != nil {
		return err
	}
	// A mistyped key shows 0 % everywhere; saying the catalogue lacks it
	// tells that apart from a service nobody serves.
	name, known := reg.Reference().Service(service)
	if !known && reg.Reference().Services() > 0 {
		fmt.Fprintf(stderr, "coverage: %s is not in the imported LeiKa catalogue (%d services)\n", *key, reg.Reference().Services())
	}
	if *asJSON {
		if !*uncovered {
			for i := range c.Lands {
				c.Lands[i].Uncovered = nil
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	}
	if name != "" {
		name = " " + name
	}
	fmt.Fprintf(stdout, "coverage of %s%s at %s (Gebietsstand %s)\n\n", service, name, at.Format(time.RFC3339),
		reg.Reference().Directory().Date().Format(time.DateOnly))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "LAND\tNAME\tGEMEINDEN\tCOVERED\t%\tPOPULATION\tCOVERED\t%\t")
	pct := func(a, b int) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", 100*float64(a)/float64(b))
	}
	for _, l := range c.Lands {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\t\n", l.Land, l.Name, l.Gemeinden, l.Covered, pct(l.Covered, l.Gemeinden),
			l.Population, l.CoveredPopulation, pct(l.CoveredPopulation, l.Population))
	}
	fmt.Fprintf(tw, "\tGermany\t%d\t%d\t%s\t%d\t%d\t%s\t\n", c.Gemeinden, c.Covered, pct(c.Covered, c.Gemeinden),
		c.Population, c.CoveredPopulation, pct(c.CoveredPopulation, c.Population))
	if err := tw.Flush(); err != nil {
		return err
	}
	if *uncovered {
		for _, l := range c.Lands {
			if len(l.Uncovered) == 0 {
				continue
			}
			fmt.Fprintf(stdout, "\nwithout a destination in %s %s:\n", l.Land, l.Name)
			for _, g := range l.Uncovered {
				fmt.Fprintf(stdout, "  %s  %s (%d)\n", g.ARS, g.Name, g.Population)
			}
		}
	}
	return nil
}
