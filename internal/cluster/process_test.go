package cluster

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
)

// TestProcessRestart: a process that exits unasked starts again, one ended
// on purpose does not, and a stopped one stays stopped.
func TestProcessRestart(t *testing.T) {
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	runs := func(p *Process) int {
		raw, _ := os.ReadFile(p.logPath)
		return strings.Count(string(raw), "run\n")
	}
	waitFor := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10 s for %s", what)
			}
		}
	}

	t.Run("a crash", func(t *testing.T) {
		var out flowtest.Buffer
		p := newProcess("crashing", sh, []string{"-c", "echo run; exit 3"}, filepath.Join(dir, "crashing.log"), &out)
		p.restart = true
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		waitFor("a second run", func() bool { return runs(p) >= 2 })
		p.stop(time.Second)
		n := runs(p)
		time.Sleep(2500 * time.Millisecond) // longer than the next backoff
		if got := runs(p); got != n {
			t.Errorf("%d runs after the stop, want %d", got, n)
		}
		if got := out.String(); !strings.Contains(got, "crashing starts again in 1s") || !strings.Contains(got, "exit status 3") {
			t.Errorf("report %q", got)
		}
	})
	t.Run("a stop during a restart", func(t *testing.T) {
		for i := range 30 {
			p := newProcess("racing", sh, []string{"-c", "exec sleep 60"}, filepath.Join(dir, "racing.log"), io.Discard)
			p.restart = true
			var wg sync.WaitGroup
			wg.Go(p.startAgain)
			wg.Go(func() { p.stop(5 * time.Second) })
			wg.Wait()
			if !p.exited() {
				p.kill()
				t.Fatalf("iteration %d: a child runs after the stop", i)
			}
		}
	})
	t.Run("a kill on purpose", func(t *testing.T) {
		var out flowtest.Buffer
		p := newProcess("killed", sh, []string{"-c", "echo run; exec sleep 60"}, filepath.Join(dir, "killed.log"), &out)
		p.restart = true
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		waitFor("the first run", func() bool { return runs(p) == 1 })
		if err := p.kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if !p.exited() || runs(p) != 1 || out.String() != "" {
			t.Errorf("after a kill: exited %t, %d runs, report %q; want it left ended", p.exited(), runs(p), out.String())
		}
	})
}
