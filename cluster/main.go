// Command cluster runs Amtsbote distributed on this machine, without
// Docker: three clustered nats-server processes with JetStream (built from
// the nats-server module in go.mod), PostgreSQL, two gateways behind a
// load balancer, two routers, a ledger, a signer and a delivery role, each
// a process of its own on loopback. Ctrl-C stops them all.
//
//	go run ./cluster [flags]          make cluster
//	go run ./cluster soak [flags]     make soak: the cluster, load and leader failovers
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/amtsbote/amtsbote/internal/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "cluster:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "soak" {
		return runSoak(ctx, args[1:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := commonFlags(fs, getenv, "cluster")
	sub := fs.String("subscriber-config", "", "run amtsbote subscriber --config FILE beside the roles, the demo authority")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := cf.config(ctx, stdout)
	if err != nil {
		return err
	}
	cfg.SubscriberConfig = *sub
	cfg.Restart = true
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := c.Print(stdout); err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping the roles, then the NATS nodes…")
	return nil
}

// common are the flags make cluster and make soak share.
type common struct {
	dir, databaseURL string
	basePort         int
	fresh            bool
}

func commonFlags(fs *flag.FlagSet, getenv func(string) string, name string) *common {
	c := &common{}
	root := moduleRoot()
	fs.StringVar(&c.dir, "dir", filepath.Join(root, "data", name), "directory for the NATS stores, keys, demo.json and logs")
	def := getenv("AMTSBOTE_CLUSTER_DATABASE_URL")
	if def == "" {
		def = "postgres://postgres@127.0.0.1:5432/amtsbote_" + name + "?sslmode=disable"
	}
	fs.StringVar(&c.databaseURL, "database-url", def, "PostgreSQL database of the roles, created when missing (AMTSBOTE_CLUSTER_DATABASE_URL)")
	base := 19000
	if name == "soak" {
		base = 19200
	}
	fs.IntVar(&c.basePort, "base-port", base, "NATS on base+1..3, routes base+11..13, monitoring base+21..23, load balancer base+80, roles base+81..")
	fs.BoolVar(&c.fresh, "fresh", name == "soak", "start from nothing: remove -dir and drop the database")
	return c
}

// config builds the binaries and returns the cluster's configuration.
func (c *common) config(ctx context.Context, stdout io.Writer) (cluster.Config, error) {
	if c.fresh {
		if err := os.RemoveAll(c.dir); err != nil {
			return cluster.Config{}, err
		}
		if err := cluster.DropDatabase(ctx, c.databaseURL); err != nil {
			return cluster.Config{}, err
		}
	}
	bin := filepath.Join(moduleRoot(), "bin")
	fmt.Fprintln(stdout, "building amtsbote and nats-server…")
	for _, b := range [][2]string{{"amtsbote", "."}, {"nats-server", "github.com/nats-io/nats-server/v2"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, b[0]), b[1])
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return cluster.Config{}, fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}
	return cluster.Config{
		Dir: c.dir, Amtsbote: filepath.Join(bin, "amtsbote"), NATSServer: filepath.Join(bin, "nats-server"),
		DatabaseURL: c.databaseURL, CreateDatabase: true, BasePort: c.basePort, Replicas: 3, Log: stdout,
	}, nil
}

// moduleRoot is the directory of go.mod, where go run ./cluster is run from.
func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		wd, _ := os.Getwd()
		return wd
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
