package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/store"
)

const deadUsage = `usage: amtsbote dead list [--reason R] [--destination ID] [--limit N] [--offset N]
       amtsbote dead show SEQ
       amtsbote dead redrive SEQ... | --all [--reason R] [--destination ID]
       amtsbote dead purge SEQ...
Every command takes --nats-url; redrive and purge also --data-dir or --database-url for their audit
record.
`

// runDead manages the dead letters in DEAD, talking to NATS directly.
func runDead(ctx context.Context, args []string, env envReader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, deadUsage)
		return ErrUsage
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, deadUsage)
		return nil
	}
	cmd := args[0]
	fs := newFlagSet("dead "+cmd, stderr)
	natsURL := fs.String("nats-url", env.str("AMTSBOTE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URLs, comma-separated (AMTSBOTE_NATS_URL)")
	var (
		sf                  storeFlags
		reason, destination = new(string), new(string)
		limit, offset       = new(int), new(int)
		all                 = new(bool)
	)
	switch cmd {
	case "list", "show", "redrive", "purge":
	default:
		fmt.Fprintf(stderr, "unknown dead command %q\n%s", cmd, deadUsage)
		return ErrUsage
	}
	// Each command shows in its -h the flags it reads.
	if cmd == "list" || cmd == "redrive" {
		fs.StringVar(reason, "reason", "", "only dead letters of this reason")
		fs.StringVar(destination, "destination", "", "only dead letters of this destination id")
	}
	if cmd == "list" {
		fs.IntVar(limit, "limit", 100, "list at most this many")
		fs.IntVar(offset, "offset", 0, "skip this many")
	} else {
		*limit = 1
	}
	if cmd == "redrive" {
		fs.BoolVar(all, "all", false, "re-drive every dead letter --reason and --destination select")
	}
	if cmd == "purge" || cmd == "redrive" {
		sf.register(fs, env)
	}
	positional, err := parseAnyOrder(fs, args[1:])
	if err != nil {
		return err
	}
	filter := bus.DeadFilter{Reason: *reason, DestinationID: strings.ToLower(*destination)}
	seqs, err := checkDeadArgs(cmd, filter, *destination, *limit, *offset, positional)
	if err != nil {
		return badUsage(err)
	}
	switch {
	case cmd == "list" && len(seqs) > 0, cmd == "show" && len(seqs) != 1, cmd == "purge" && len(seqs) == 0,
		cmd == "redrive" && (len(seqs) == 0) == !*all:
		fmt.Fprint(stderr, deadUsage)
		return ErrUsage
	}

	b, err := bus.Connect(ctx, *natsURL)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := b.JetStream().Stream(ctx, bus.StreamDead); errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("the NATS at %s holds no stream %s: it is not an Amtsbote installation's (dev's natsUrl is in data/demo.json)", bus.Redact(*natsURL), bus.StreamDead)
	}

	switch cmd {
	case "list":
		list, total, err := b.DeadLetters(ctx, filter, *offset, *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tAT\tREASON\tATTEMPTS\tDESTINATION\tSUBJECT\tMSG ID\tERROR")
		for _, d := range list {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.Seq, d.At.Format("2006-01-02T15:04:05Z"), d.Reason, d.Attempts,
				orDash(d.DestinationID), d.Subject, orDash(d.MsgID), d.Error)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d of %d\n", len(list), total)
		return nil
	case "show":
		d, err := b.DeadLetter(ctx, seqs[0])
		if err != nil {
			return err
		}
		out, err := json.MarshalIndent(struct {
			bus.DeadLetter
			Header map[string][]string `json:"header"`
			Data   string              `json:"data"`
		}{d, d.Header, base64.StdEncoding.EncodeToString(d.Data)}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", out)
		return nil
	}

	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := sameInstallation(ctx, b, st); err != nil {
		return err
	}
	if cmd == "redrive" && *all {
		list, _, err := b.DeadLetters(ctx, filter, 0, 0)
		if err != nil {
			return err
		}
		for _, d := range list {
			seqs = append(seqs, d.Seq)
		}
		if len(seqs) == 0 {
			fmt.Fprintln(stdout, "no dead letter matches; none re-driven")
			return nil
		}
	}
	done := map[string]string{"redrive": "re-driven", "purge": "purged"}[cmd]
	var errs []error
	for i, seq := range seqs {
		if ctx.Err() != nil {
			// Interrupted: the dead letters begun are done, the rest stay.
			errs = append(errs, fmt.Errorf("interrupted, %d not %s: %v", len(seqs)-i, done, seqs[i:]))
			break
		}
		if err := deadAct(ctx, b, st, cmd, done, seq, sf.actor, stdout, stderr); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dead %s: %d of %d failed: %w", cmd, len(errs), len(seqs), errors.Join(errs...))
	}
	return nil
}

// deadAct re-drives or purges the dead letter at seq and writes its audit
// entry, both carried through when ctx ends.
func deadAct(ctx context.Context, b *bus.Bus, st store.Store, cmd, done string, seq uint64, actor string, stdout, stderr io.Writer) error {
	ctx, cancel := bus.DeadActContext(ctx)
	defer cancel()
	var (
		d      bus.DeadLetter
		err    error
		action = bus.AuditDeadRedrive
	)
	if cmd == "purge" {
		action = bus.AuditDeadPurge
		d, err = b.PurgeDead(ctx, seq)
	} else {
		d, err = b.Redrive(ctx, seq, bus.InboxRecorded(store.Recorded(st)))
	}
	if err != nil {
		fmt.Fprintf(stderr, "%d: %v\n", seq, err)
		return err
	}
	if err := st.Audit(ctx, store.AuditEntry{Actor: actor, Action: action, Object: d.AuditObject(), Before: d.AuditRecord()}); err != nil {
		fmt.Fprintf(stderr, "%d: %s, but the audit entry was not written: %v\n", seq, done, err)
		return fmt.Errorf("audit %s of %d: %w", action, seq, err)
	}
	fmt.Fprintf(stdout, "%d %s (%s, %s)\n", seq, done, d.Reason, d.Subject)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkDeadArgs checks a dead command's filter, page and sequence numbers
// and returns the numbers; its errors are the command used wrongly.
func checkDeadArgs(cmd string, filter bus.DeadFilter, destination string, limit, offset int, positional []string) ([]uint64, error) {
	if filter.Reason != "" {
		if _, err := bus.DeadSubject(filter.Reason); err != nil {
			return nil, fmt.Errorf("--reason: %w", err)
		}
	}
	// As the admin API checks them: a filter that can match nothing is a
	// mistyped one.
	if filter.DestinationID != "" {
		if _, err := uuid.Parse(filter.DestinationID); err != nil || len(filter.DestinationID) != 36 {
			return nil, fmt.Errorf("--destination %q: want a destination id (UUID)", destination)
		}
	}
	if limit < 1 || limit > store.MaxPageLimit {
		return nil, fmt.Errorf("--limit %d: want 1 to %d", limit, store.MaxPageLimit)
	}
	if offset < 0 {
		return nil, fmt.Errorf("--offset %d: want 0 or more", offset)
	}
	var seqs []uint64
	for _, a := range positional {
		seq, err := strconv.ParseUint(a, 10, 64)
		if err != nil || seq == 0 {
			return nil, fmt.Errorf("dead %s: %q is no dead letter sequence number", cmd, a)
		}
		seqs = append(seqs, seq)
	}
	return seqs, nil
}
