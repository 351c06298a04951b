// Command profiled is the amtsbote command with pprof profiles: while it
// runs it records a CPU profile, and when it stops it writes the heap and
// allocation profiles, into the directory LOADTEST_PROFILE_DIR names. The
// load test runs it instead of amtsbote so that every figure it reports
// comes with the profile of the run that produced it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/amtsbote/amtsbote/internal/cli"
)

func main() {
	dir := os.Getenv("LOADTEST_PROFILE_DIR")
	stopProfile, err := startProfile(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profiled:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if perr := stopProfile(); perr != nil {
		fmt.Fprintln(os.Stderr, "profiled:", perr)
	}
	if err != nil {
		if !errors.Is(err, cli.ErrUsage) {
			fmt.Fprintln(os.Stderr, "amtsbote:", err)
		}
		os.Exit(2)
	}
}

// startProfile starts the CPU profile in dir; the function it returns
// stops it and writes the heap and allocation profiles. An empty dir
// profiles nothing.
func startProfile(dir string) (func() error, error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	cpu, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		cpu.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		errs := []error{cpu.Close()}
		runtime.GC()
		for _, name := range []string{"heap", "allocs"} {
			f, err := os.Create(filepath.Join(dir, name+".pprof"))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, pprof.Lookup(name).WriteTo(f, 0), f.Close())
		}
		return errors.Join(errs...)
	}, nil
}
