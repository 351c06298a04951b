//go:build unix

package failpoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// childEnv marks the test binary run as the process that reaches the points.
const childEnv = "FAILPOINT_TEST_CHILD"

// TestKill runs this test binary again with points armed and checks where
// it died: at the first armed point, by SIGKILL, and nowhere without one.
func TestKill(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		reachPoints()
		os.Exit(0)
	}
	tests := []struct {
		armed   string
		lastOut string // the last line printed before the process ended
		killed  bool
	}{
		{"", "end", false},
		{"a.unused, b.other", "end", false},
		{"a.first", "start", true},
		{"b.step:reject-submission", "after a.first", true},
		{"b.step:accept-submission", "after b.step:reject-submission", true},
		{" c.last ,a.unused", "after b.step:accept-submission", true},
		{"b.step", "after a.first", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.armed), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestKill$", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"=1", Env+"="+tt.armed)
			var out, errOut strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err := cmd.Run()
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, tt.lastOut) {
				t.Errorf("last line printed %q, want %q\n%s", last, tt.lastOut, out.String())
			}
			var ee *exec.ExitError
			switch {
			case tt.killed && !errors.As(err, &ee):
				t.Fatalf("exited with %v, want killed", err)
			case tt.killed:
				if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Errorf("ended with %v, want SIGKILL", ee)
				}
				if !strings.Contains(errOut.String(), "failpoint ") {
					t.Errorf("stderr does not name the point: %q", errOut.String())
				}
			case err != nil:
				t.Errorf("exited with %v, want success\n%s", err, errOut.String())
			}
		})
	}
}

func reachPoints() {
	fmt.Println("start")
	Kill("a.first")
	fmt.Println("after a.first")
	KillFor("b.step", "reject-submission")
	fmt.Println("after b.step:reject-submission")
	KillFor("b.step", "accept-submission")
	fmt.Println("after b.step:accept-submission")
	Kill("c.last")
	fmt.Println("end")
}
