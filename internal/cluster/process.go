package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is one child process of the cluster, its output in a log file.
type Process struct {
	name    string
	bin     string
	args    []string
	logPath string
	out     io.Writer // where an unexpected exit is reported

	// restart starts the process again after an exit nobody asked for,
	// as a service manager would.
	restart bool

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	expected bool // the exit was asked for
	halted   bool // no restart any more
	backoff  time.Duration
	started  time.Time
}

// Restarts wait from restartFirst, doubling to restartLongest; a process
// that ran restartReset before its exit starts over at restartFirst.
const (
	restartFirst   = time.Second
	restartLongest = 30 * time.Second
	restartReset   = time.Minute
)

func newProcess(name, bin string, args []string, logPath string, out io.Writer) *Process {
	return &Process{name: name, bin: bin, args: args, logPath: logPath, out: out}
}

func (p *Process) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	// A stop, or another start, that came between the caller's check and
	// this launch wins: this child ends at once.
	if p.halted || !p.exitedLocked() {
		p.mu.Unlock()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		return errNotStarted
	}
	p.cmd, p.done, p.expected, p.started = cmd, done, false, time.Now()
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		expected := p.expected
		wait := p.nextBackoffLocked()
		p.mu.Unlock()
		if !expected {
			fmt.Fprintf(p.out, "%s (pid %d) exited: %v; see %s\n", p.name, cmd.Process.Pid, err, p.logPath)
		}
		close(done)
		if !expected && p.restart {
			fmt.Fprintf(p.out, "%s starts again in %s\n", p.name, wait)
			time.AfterFunc(wait, p.startAgain)
		}
	}()
	return nil
}

// errNotStarted: the process was stopped or started meanwhile.
var errNotStarted = errors.New("stopped or started meanwhile")

// nextBackoffLocked is the wait before a restart after the exit now.
func (p *Process) nextBackoffLocked() time.Duration {
	if p.backoff == 0 || time.Since(p.started) >= restartReset {
		p.backoff = restartFirst
	} else {
		p.backoff = min(2*p.backoff, restartLongest)
	}
	return p.backoff
}

// startAgain starts the exited process unless it was halted or started
// meanwhile (StartRole).
func (p *Process) startAgain() {
	p.mu.Lock()
	skip := p.halted || !p.exitedLocked()
	p.mu.Unlock()
	if skip {
		return
	}
	if err := p.start(); err != nil && !errors.Is(err, errNotStarted) {
		fmt.Fprintf(p.out, "%s: %v\n", p.name, err)
	}
}

// halt ends restarts: the cluster stops.
func (p *Process) halt() {
	p.mu.Lock()
	p.halted = true
	p.mu.Unlock()
}

func (p *Process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *Process) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedLocked()
}

func (p *Process) exitedLocked() bool {
	if p.done == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to a running process and returns the channel closed at
// its exit, or nil when it is not running.
func (p *Process) signal(sig syscall.Signal) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return nil
	}
	p.expected = true
	_ = p.cmd.Process.Signal(sig)
	return p.done
}

// kill ends the process with SIGKILL and waits for it.
func (p *Process) kill() error {
	done := p.signal(syscall.SIGKILL)
	if done == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	<-done
	return nil
}

// stop asks the process to end, for good, and kills it after timeout.
func (p *Process) stop(timeout time.Duration) {
	p.halt()
	done := p.signal(signalStop)
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(timeout):
		fmt.Fprintf(p.out, "%s did not stop within %s; killing it\n", p.name, timeout)
		p.signal(syscall.SIGKILL)
		<-done
	}
}
