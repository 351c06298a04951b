// Command loadtest drives a running Amtsbote through its public API and
// prints what it measured. It asserts nothing; the figures are for
// reading beside each other.
//
//	go run ./loadtest lifecycle [flags]
//
// lifecycle starts `amtsbote dev` as a child process on a temporary data
// dir, runs the whole FIT-Connect lifecycle (announce, submit, route,
// pickup, accept) with concurrent senders and receivers of the Go SDK
// through HTTP for a fixed time, and prints the lifecycle rate, the
// submit-to-accepted latency and, measured in the same run, this
// machine's parallel PS512 signing rate: the bound the lifecycle runs
// against, since every lifecycle costs several RSA-4096 private-key
// operations.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stop loadStop
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		for range sigs {
			if !stop.fire() {
				cancel()
			}
		}
	}()
	err := run(ctx, &stop, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sigs)
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
		}
		os.Exit(2)
	}
}

// loadStop ends a run's load early on the first interrupt, so that its
// report is still written; an interrupt outside the load, or a second one,
// ends the run at once.
type loadStop struct {
	mu  sync.Mutex
	end func() // set while a load runs, until used
}

// arm makes end what the next interrupt does, until disarm.
func (s *loadStop) arm(end func()) (disarm func()) {
	s.mu.Lock()
	s.end = end
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.end = nil
		s.mu.Unlock()
	}
}

// fire ends the load, if one runs and was not ended yet.
func (s *loadStop) fire() bool {
	s.mu.Lock()
	end := s.end
	s.end = nil
	s.mu.Unlock()
	if end == nil {
		return false
	}
	end()
	return true
}

// errUsage marks an error whose message was already printed.
var errUsage = errors.New("usage")

const usage = `loadtest: drives Amtsbote and prints figures; it asserts nothing.

Usage:
  go run ./loadtest run [flags]         a scenario of loadtest/scenarios against dev or a running
                                        Amtsbote, with its yardsticks; writes report.json and report.html
  go run ./loadtest lifecycle [flags]   announce → submit → route → pickup → accept in dev, closed loop

Run 'go run ./loadtest run -h' or 'go run ./loadtest lifecycle -h' for their flags.
`

func run(ctx context.Context, stop *loadStop, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return runRun(ctx, stop, args[1:], stdout, stderr)
	case "lifecycle":
		return runLifecycle(ctx, args[1:], stdout, stderr)
	case bareCommand:
		return runBare(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown scenario %q\n\n%s", args[0], usage)
		return errUsage
	}
}
