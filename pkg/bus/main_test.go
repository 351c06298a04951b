package bus_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/bus"
)

// serverProcessEnv, when set to a directory, turns the test binary into a
// NATS server process storing there (see serverProcess).
const serverProcessEnv = "AMTSBOTE_BUS_TEST_SERVER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(serverProcessEnv); dir != "" {
		os.Exit(serveForParent(dir))
	}
	os.Exit(m.Run())
}

// serveForParent runs an embedded server, prints its URL and serves until
// the parent closes stdin.
func serveForParent(dir string) int {
	s, err := bus.RunEmbedded(bus.EmbeddedConfig{Dir: dir, Port: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(s.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	s.Shutdown()
	s.WaitForShutdown()
	return 0
}

// serverProcess starts a JetStream server in a child process and returns its
// URL. Tests that measure this process's heap use it, so that the server's
// own buffers do not count.
func serverProcess(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serverProcessEnv+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("server process: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("server process: no URL: %v", err)
	}
	return strings.TrimSpace(line)
}
