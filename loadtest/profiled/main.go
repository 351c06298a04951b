// Command profiled is the amtsbote command with pprof profiles: while it
// runs it records a CPU profile, and when it stops it writes the heap and
// allocation profiles into the directory LOADTEST_PROFILE_DIR names. The
// load test runs it instead of amtsbote so that every figure it reports
// comes with the profile of the run that produced it.
//
// SIGUSR1 marks the start of the load (answered with the file "load" once
// the profile is switched) and SIGUSR2 its end: cpu.pprof then
// covers the load alone (start-up is in startup.cpu.pprof, what follows in
// after.cpu.pprof), and allocs.start.pprof holds the allocations before it,
// for pprof -base; at SIGUSR1 the process also returns its free memory to
// the system, so that RSS during the load is the load's. With
// LOADTEST_CONTENTION set, mutex.pprof and block.pprof hold the load's
// contention.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"syscall"

	"github.com/amtsbote/amtsbote/internal/cli"
)

func main() {
	p, err := startProfile(os.Getenv("LOADTEST_PROFILE_DIR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profiled:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if perr := p.stop(); perr != nil {
		fmt.Fprintln(os.Stderr, "profiled:", perr)
	}
	if err != nil {
		if !errors.Is(err, cli.ErrUsage) {
			fmt.Fprintln(os.Stderr, "amtsbote:", err)
		}
		os.Exit(2)
	}
}

// mutexFraction samples one in so many mutex contentions; blockRate
// records every blocking of so many nanoseconds or more and samples
// shorter ones.
const (
	mutexFraction = 20
	blockRate     = 100_000
)

// phasesFile in the profile directory says that SIGUSR1 and SIGUSR2 mark
// the load; loadFile appears when what SIGUSR1 asks for is done, so that
// the load starts after its collections, not during them.
const (
	phasesFile = "phases"
	loadFile   = "load"
)

// profile is the CPU profile being written, and the load's phase.
type profile struct {
	dir string

	contention bool

	mu   sync.Mutex
	file *os.File
}

// startProfile starts the CPU profile in dir and switches it at SIGUSR1
// and SIGUSR2. An empty dir profiles nothing.
func startProfile(dir string) (*profile, error) {
	// Contention shows where the load waits rather than computes; it slows
	// the process, so only on request.
	p := &profile{dir: dir, contention: os.Getenv("LOADTEST_CONTENTION") != ""}
	if dir == "" {
		return p, nil
	}
	if err := p.switchTo("cpu.pprof"); err != nil {
		return nil, err
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	// The load test signals only a binary that says it takes the signals;
	// they would stop another.
	if err := os.WriteFile(filepath.Join(dir, phasesFile), nil, 0o600); err != nil {
		return nil, err
	}
	go func() {
		for s := range sig {
			var err error
			if s == syscall.SIGUSR1 {
				err = p.loadStarts()
			} else {
				err = p.loadEnds()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "profiled:", err)
			}
		}
	}()
	return p, nil
}

// loadStarts keeps what came before as startup.cpu.pprof and
// allocs.start.pprof and profiles the load into cpu.pprof.
func (p *profile) loadStarts() error {
	if err := p.switchTo(""); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(p.dir, "cpu.pprof"), filepath.Join(p.dir, "startup.cpu.pprof")); err != nil {
		return err
	}
	if err := p.write("allocs", "allocs.start.pprof"); err != nil {
		return err
	}
	// The yardsticks run on the embedded NATS server before the load; what
	// they left is handed back, so that the RSS sampled during the load is
	// the load's and not the runtime's slow return of theirs. Two
	// collections: the NATS server pools its block buffers, and a pool lets
	// go of what it holds only at the second.
	runtime.GC()
	debug.FreeOSMemory()
	// Set here rather than at start: the embedded NATS server resets the
	// block profile's rate when it starts.
	if p.contention {
		runtime.SetMutexProfileFraction(mutexFraction)
		runtime.SetBlockProfileRate(blockRate)
	}
	if err := p.switchTo("cpu.pprof"); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.dir, loadFile), nil, 0o600)
}

// loadEnds profiles what follows the load into after.cpu.pprof and, when
// asked for, writes the load's contention.
func (p *profile) loadEnds() error {
	errs := []error{p.switchTo("after.cpu.pprof")}
	if p.contention {
		runtime.SetMutexProfileFraction(0)
		runtime.SetBlockProfileRate(0)
		errs = append(errs, p.write("mutex", "mutex.pprof"), p.write("block", "block.pprof"))
	}
	return errors.Join(errs...)
}

// switchTo ends the CPU profile under way and starts one into name (none
// for "").
func (p *profile) switchTo(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file != nil {
		pprof.StopCPUProfile()
		if err := p.file.Close(); err != nil {
			return err
		}
		p.file = nil
	}
	if name == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(p.dir, name))
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	p.file = f
	return nil
}

// write writes the named runtime profile into file.
func (p *profile) write(name, file string) error {
	f, err := os.Create(filepath.Join(p.dir, file))
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup(name).WriteTo(f, 0), f.Close())
}

// stop ends the CPU profile and writes the heap and allocation profiles.
func (p *profile) stop() error {
	if p.dir == "" {
		return nil
	}
	errs := []error{p.switchTo("")}
	runtime.GC()
	for _, name := range []string{"heap", "allocs"} {
		errs = append(errs, p.write(name, name+".pprof"))
	}
	return errors.Join(errs...)
}
