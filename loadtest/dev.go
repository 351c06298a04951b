package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// demoFile is the part of dev's demo.json the load test uses.
type demoFile struct {
	BaseURL string `json:"baseUrl"`
	NATSURL string `json:"natsUrl"`
	Clients []struct {
		Role         string `json:"role"`
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	} `json:"clients"`
	Destinations []struct {
		DestinationID     string   `json:"destinationId"`
		Name              string   `json:"name"`
		Services          []string `json:"services"`
		EncryptionKeyFile string   `json:"encryptionKeyFile"`
		SigningKeyFile    string   `json:"signingKeyFile"`
	} `json:"destinations"`
}

// credentials returns the client id and secret of the demo client of role.
func (d demoFile) credentials(role string) (string, string, error) {
	for _, c := range d.Clients {
		if c.Role == role {
			return c.ClientID, c.ClientSecret, nil
		}
	}
	return "", "", fmt.Errorf("demo.json has no %s client", role)
}

// lockedBuffer collects a child's output for the reader in another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dev is `amtsbote dev` running as a child process.
type dev struct {
	cmd    *exec.Cmd
	done   chan error
	stderr *lockedBuffer
	demo   demoFile
}

// buildAmtsbote builds the amtsbote command of the module the load test
// belongs to into dir.
func buildAmtsbote(ctx context.Context, dir string) (string, error) {
	return buildCommand(ctx, dir, ".")
}

// buildCommand builds the module's command pkg into dir/amtsbote.
func buildCommand(ctx context.Context, dir, pkg string) (string, error) {
	root, ok := module(ctx)
	if !ok {
		return "", errors.New("build amtsbote: not inside its module; run the load test from the checkout, or give -bin or -base-url")
	}
	bin := filepath.Join(dir, "amtsbote")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build amtsbote: %w\n%s", err, out)
	}
	return bin, nil
}

// startDev runs bin dev on dataDir and waits until it printed its demo
// credentials (the first start generates RSA-4096 keys: seconds).
// extra are further flags of dev, env further variables of its
// environment.
func startDev(ctx context.Context, bin, dataDir, databaseURL string, extra, env []string) (*dev, error) {
	args := []string{"dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--nats-port", "-1", "--log-level", "warn"}
	if databaseURL != "" {
		args = append(args, "--database-url", databaseURL)
	}
	args = append(args, extra...)
	d := &dev{cmd: exec.Command(bin, args...), done: make(chan error, 1), stderr: &lockedBuffer{}}
	// The child's flags come from the arguments alone.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AMTSBOTE_") {
			d.cmd.Env = append(d.cmd.Env, kv)
		}
	}
	d.cmd.Env = append(d.cmd.Env, env...)
	stdout := &lockedBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dev: %w", err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.NewTimer(3 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(stdout.String(), "Try:") {
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("dev exited: %v\n%s", err, d.stderr.String())
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		case <-deadline.C:
			d.stop()
			return nil, errors.New("dev printed no credentials within 3 minutes")
		case <-tick.C:
		}
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "demo.json"))
	if err == nil {
		err = json.Unmarshal(raw, &d.demo)
	}
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("read demo.json: %w", err)
	}
	return d, nil
}

// stop interrupts dev and waits for it, killing it after 30 seconds.
func (d *dev) stop() error {
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-d.done:
		return err
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return errors.New("dev did not stop within 30s; killed")
	}
}
