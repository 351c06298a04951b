package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
)

// target is the Amtsbote under load: one the load test started (dev) or
// one running elsewhere, known by its base URL and a demo.json-shaped
// file of credentials and destinations.
type target struct {
	kind    string // "dev" or "external"
	baseURL string
	natsURL string
	demo    demoFile
	dests   []*destination
	// signing is Amtsbote's own signing key where the load test can read
	// it; else a fresh key of the same size.
	signing    jose.KeyPair
	procs      []process
	profileDir string
	bin        string
	// dataDir is dev's data dir, work the load test's own folder.
	dataDir string
	work    string
	stop    func() error
}

// startTarget starts dev with profiles, or describes the external target.
func startTarget(ctx context.Context, cfg runConfig, work string, stdout io.Writer) (*target, error) {
	t := &target{work: work, stop: func() error { return nil }}
	if cfg.baseURL != "" {
		raw, err := os.ReadFile(cfg.demoFile)
		if err != nil {
			return nil, fmt.Errorf("-base-url needs -demo, a demo.json-shaped file of clients and destinations: %w", err)
		}
		if err := json.Unmarshal(raw, &t.demo); err != nil {
			return nil, fmt.Errorf("read %s: %w", cfg.demoFile, err)
		}
		t.kind, t.baseURL, t.natsURL = "external", strings.TrimRight(cfg.baseURL, "/"), t.demo.NATSURL
		procs, err := parsePIDs(cfg.pids)
		if err != nil {
			return nil, err
		}
		t.procs = procs
		if t.signing, err = jose.GenerateKeyPair(jose.Signing, "loadtest-signing", "Amtsbote load test"); err != nil {
			return nil, err
		}
	} else {
		bin := cfg.bin
		if bin == "" {
			fmt.Fprintln(stdout, "building amtsbote with profiles…")
			var err error
			if bin, err = buildCommand(ctx, work, "./loadtest/profiled"); err != nil {
				return nil, err
			}
		}
		t.bin = bin
		t.profileDir = filepath.Join(work, "profile")
		if err := os.MkdirAll(t.profileDir, 0o700); err != nil {
			return nil, err
		}
		fmt.Fprintln(stdout, "starting amtsbote dev (first start generates RSA-4096 keys)…")
		dataDir := filepath.Join(work, "data")
		// The limits per address are for the public internet; the load
		// test speaks from one address.
		extra := []string{"--routes-rate", "1e9", "--routes-burst", "1000000000", "--public-rate", "1e9", "--public-burst", "1000000000"}
		d, err := startDev(ctx, bin, dataDir, cfg.databaseURL, extra, []string{"LOADTEST_PROFILE_DIR=" + t.profileDir})
		if err != nil {
			return nil, err
		}
		t.kind, t.demo, t.baseURL, t.natsURL, t.dataDir = "dev", d.demo, d.demo.BaseURL, d.demo.NATSURL, dataDir
		t.procs = []process{{Name: "amtsbote dev", PID: d.cmd.Process.Pid, Amtsbote: true}}
		t.stop = d.stop
		if t.signing, err = readKey(filepath.Join(dataDir, "keys", "amtsbote.signing.jwk.json")); err != nil {
			d.stop()
			return nil, err
		}
	}
	if cfg.natsURL != "" {
		t.natsURL = cfg.natsURL
	}
	for _, dd := range t.demo.Destinations {
		dest := &destination{id: dd.DestinationID}
		if len(dd.Services) > 0 {
			dest.service = dd.Services[0]
		}
		if dd.EncryptionKeyFile != "" {
			enc, err := readKey(dd.EncryptionKeyFile)
			if err != nil {
				return nil, err
			}
			if dest.ring, err = client.NewKeyRing(enc); err != nil {
				return nil, err
			}
			dest.enc = []jose.KeyPair{enc}
		}
		sig, err := readKey(dd.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("the receivers sign with the destination's key: %w", err)
		}
		dest.signer = sig
		t.dests = append(t.dests, dest)
	}
	t.procs = append(t.procs, process{Name: "loadtest", PID: os.Getpid()})
	return t, nil
}

// parsePIDs reads "name=pid,name=pid": the external Amtsbote's processes
// on this machine.
func parsePIDs(s string) ([]process, error) {
	var out []process
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		name, pid, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || n <= 0 {
			return nil, fmt.Errorf("-pids %q: want name=pid,name=pid", s)
		}
		out = append(out, process{Name: name, PID: n, Amtsbote: true})
	}
	return out, nil
}

// offers fetches every destination's services and encryption key as a
// portal does, several at once, and returns what the senders may send.
func (t *target) offers(ctx context.Context, sender *client.Sender) ([]offer, map[string][]string, error) {
	type fetched struct {
		dest client.Destination
		key  *gojose.JSONWebKey
	}
	all := make([]fetched, len(t.dests))
	err := parallel(ctx, len(t.dests), func(i int) error {
		id := t.dests[i].id
		dest, err := sender.FetchDestination(ctx, id)
		if err != nil {
			return err
		}
		key, err := sender.FetchEncryptionKey(ctx, id, dest.EncryptionKID)
		if err != nil {
			return err
		}
		all[i] = fetched{dest, key}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var out []offer
	regions := map[string][]string{} // "destination|service" → regions
	for i, f := range all {
		d := t.dests[i]
		for _, s := range f.dest.Services {
			o := offer{destination: d.id, service: s.Identifier, key: f.key}
			for _, sc := range s.SubmissionSchemas {
				if sc.MimeType == "application/json" {
					o.schemaURI = sc.SchemaURI
					break
				}
			}
			if o.schemaURI == "" {
				continue
			}
			out = append(out, o)
			regions[d.id+"|"+s.Identifier] = s.Regions
		}
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("no destination of the target offers a service with a JSON schema")
	}
	return out, regions, nil
}

// httpClient is the client of senders and receivers: keep-alive, enough
// idle connections, and every request timed by rec.
func httpClient(rec *recorder, conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	tr.MaxIdleConns = conns
	return &http.Client{Transport: &timing{next: tr, rec: rec}}
}

// markLoad tells a profiled dev that the load starts (SIGUSR1) or ended
// (SIGUSR2), so that its CPU profile covers the load alone. A binary that
// did not write the file "phases" into the profile directory is not
// signalled: it would stop. At the start it waits, up to loadMarkWait,
// for dev's file "load": dev collects garbage and hands its free memory
// back first, which the load's first second would otherwise wait for.
func (t *target) markLoad(sig os.Signal) {
	if t.kind != "dev" || t.profileDir == "" || len(t.procs) == 0 {
		return
	}
	if _, err := os.Stat(filepath.Join(t.profileDir, "phases")); err != nil {
		return
	}
	ready := filepath.Join(t.profileDir, "load")
	_ = os.Remove(ready)
	p, err := os.FindProcess(t.procs[0].PID)
	if err != nil || p.Signal(sig) != nil || sig != syscall.SIGUSR1 {
		return
	}
	for deadline := time.Now().Add(loadMarkWait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return
		}
	}
}

// loadMarkWait bounds how long the load waits for a profiled dev to be
// ready for it.
const loadMarkWait = 10 * time.Second
