// Package cli is the amtsbote command: the all-in-one development system
// (dev), production roles (serve), and the operator commands. main.go
// calls Run; tests call it too, with their own arguments, environment and
// output.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// ErrUsage marks an error whose message was already printed with the
// usage.
var ErrUsage = errors.New("usage")

// UsageError is a command used wrongly whose message is still to be
// printed: a flag value it refuses, a required flag missing.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// badUsage marks err, unless it is nil or its message was printed, as a
// UsageError.
func badUsage(err error) error {
	if err == nil || errors.Is(err, ErrUsage) {
		return err
	}
	return &UsageError{err}
}

// ErrHelp is -h or --help answered with the usage: not a failure.
var ErrHelp = fmt.Errorf("%w: help asked for", ErrUsage)

// flagError is a command's answer to a failed flag parse, whose message
// the flag set printed: ErrHelp for -h, else ErrUsage.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return ErrHelp
	}
	return ErrUsage
}

// noArgs refuses what is left after a command's flags when it takes no
// arguments: a value without its flag, say, is not silently dropped.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() == 0 {
		return nil
	}
	fmt.Fprintf(fs.Output(), "%s: unexpected argument %q; every value needs its flag\n", fs.Name(), fs.Arg(0))
	return ErrUsage
}

// isHelp reports whether arg asks for a command's usage.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

const usage = `amtsbote: carries FIT-Connect submissions to the authorities responsible for them.

Usage:
  amtsbote dev [flags]                 everything in one process on embedded defaults
  amtsbote serve --target=gateway      production roles against external NATS and PostgreSQL
  amtsbote subscriber --config FILE    the authority side: decrypt, deliver into the Fachverfahren, accept
  amtsbote destination create --file F create a destination from a JSON file
  amtsbote destination list            list destinations
  amtsbote client create --name N --scope S [--scope S]...
                                       create an OAuth client; prints its secret once
  amtsbote client list                 list the clients, without secrets
  amtsbote client disable|enable|rotate-secret ID
                                       refuse a client and its tokens, allow it again, give it a new secret
  amtsbote keys generate --purpose encryption|signing --kid K --out DIR
                                       generate an RSA-4096 key pair with a self-signed certificate
  amtsbote import gv100ad|leika|plz FILE
                                       import reference data: the GV100AD directory, the LeiKa catalogue, postcodes
  amtsbote coverage --leika KEY        per Land, the Gemeinden and people a service reaches a destination for
  amtsbote dead list|show|redrive|purge
                                       dead letters: list by reason and destination, show one, re-drive, purge
  amtsbote demo --database-url U --public-url U
                                       seed dev's demo destinations and clients into PostgreSQL; writes demo.json
  amtsbote version

Run 'amtsbote <command> -h' for a command's flags. Flags default from AMTSBOTE_* variables.
`

// Run runs the command args (without the program name), reading flag
// defaults from getenv and writing to stdout and stderr.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	env := envReader(getenv)
	switch cmd, rest := args[0], args[1:]; cmd {
	case "dev":
		return runDev(ctx, rest, env, stdout, stderr)
	case "serve":
		return runServe(ctx, rest, env, stdout, stderr)
	case "subscriber":
		return runSubscriber(ctx, rest, env, stdout, stderr)
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
	case "dead":
		return runDead(ctx, rest, env, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, env, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "amtsbote", Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return ErrUsage
	}
}

// Version is set at build time with -ldflags "-X github.com/amtsbote/amtsbote/internal/cli.Version=…".
var Version = "dev"

// envReader looks up AMTSBOTE_* defaults for flags.
type envReader func(string) string

func (e envReader) str(name, def string) string {
	if v := e(name); v != "" {
		return v
	}
	return def
}
