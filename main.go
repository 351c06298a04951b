// Command amtsbote runs the Amtsbote backbone: the all-in-one development
// system (dev), production roles (serve), and operator commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "amtsbote:", err)
		}
		os.Exit(2)
	}
}

// errUsage marks an error whose message was already printed with the usage.
var errUsage = errors.New("usage")

const usage = `amtsbote: carries FIT-Connect submissions to the authorities responsible for them.

Usage:
  amtsbote dev [flags]                 everything in one process on embedded defaults
  amtsbote serve --target=gateway      production roles against external NATS and PostgreSQL
  amtsbote destination create --file F create a destination from a JSON file
  amtsbote destination list            list destinations
  amtsbote client create --name N --scope S [--scope S]...
                                       create an OAuth client; prints its secret once
  amtsbote keys generate --purpose encryption|signing --kid K --out DIR
                                       generate an RSA-4096 key pair with a self-signed certificate
  amtsbote import gv100ad|leika|plz FILE
                                       import reference data: the GV100AD directory, the LeiKa catalogue, postcodes
  amtsbote coverage --leika KEY        per Land, the Gemeinden and people a service reaches a destination for
  amtsbote version

Run 'amtsbote <command> -h' for a command's flags. Flags default from AMTSBOTE_* variables.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	env := envReader(getenv)
	switch cmd, rest := args[0], args[1:]; cmd {
	case "dev":
		return runDev(ctx, rest, env, stdout, stderr)
	case "serve":
		return runServe(ctx, rest, env, stdout, stderr)
	case "destination", "destinations":
		return runDestination(ctx, rest, env, stdout, stderr)
	case "client", "clients":
		return runClient(ctx, rest, env, stdout, stderr)
	case "keys", "key":
		return runKeys(ctx, rest, env, stdout, stderr)
	case "import":
		return runImport(ctx, rest, env, stdout, stderr)
	case "coverage":
		return runCoverage(ctx, rest, env, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "amtsbote", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// envReader looks up AMTSBOTE_* defaults for flags.
type envReader func(string) string

func (e envReader) str(name, def string) string {
	if v := e(name); v != "" {
		return v
	}
	return def
}
