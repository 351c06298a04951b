// Command amtsbote runs the Amtsbote backbone: the all-in-one development
// system (dev), production roles (serve), and operator commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/amtsbote/amtsbote/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks for a graceful stop; a second one ends
		// the process at once.
		<-ctx.Done()
		stop()
	}()
	err := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, cli.ErrHelp) {
		return
	}
	// 2 for a command used wrongly, 1 for one that failed.
	var usage *cli.UsageError
	if errors.As(err, &usage) {
		fmt.Fprintln(os.Stderr, "amtsbote:", err)
		os.Exit(2)
	}
	if errors.Is(err, cli.ErrUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "amtsbote:", err)
		os.Exit(1)
	}
}
