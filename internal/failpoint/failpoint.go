// Package failpoint kills the process at named points of its work, so
// that tests can show what a crash there leaves behind. The points armed
// are those AMTSBOTE_FAILPOINTS names, comma-separated, read once at
// start; unset, a point costs one comparison.
//
// A point is named "<component>.<step>", such as
// "decision.before-publish". A point reached for a subject (an event
// name) may also be armed for that subject alone, as
// "decision.before-publish:accept-submission".
package failpoint

import (
	"os"
	"strings"
)

// Env is the environment variable that arms points.
const Env = "AMTSBOTE_FAILPOINTS"

var armed = parse(os.Getenv(Env))

func parse(v string) map[string]bool {
	var m map[string]bool
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if m == nil {
				m = map[string]bool{}
			}
			m[p] = true
		}
	}
	return m
}

// Kill kills the process with SIGKILL when point is armed. It does not
// return then: nothing after it runs, no deferred function, no flush.
func Kill(point string) {
	if armed != nil && armed[point] {
		kill(point)
	}
}

// KillFor is Kill for a point reached for subject: it kills when point or
// "point:subject" is armed.
func KillFor(point, subject string) {
	if armed != nil && (armed[point] || armed[point+":"+subject]) {
		kill(point + ":" + subject)
	}
}

func kill(point string) {
	// The one line a crashed process leaves says where it stopped.
	_, _ = os.Stderr.WriteString("failpoint " + point + ": killing the process\n")
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		os.Exit(137)
	}
	select {} // SIGKILL is on its way; nothing else may run meanwhile
}
