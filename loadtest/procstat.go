package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// procTimes is one reading of a process from /proc/<pid>/stat.
type procTimes struct {
	cpu time.Duration // user + system
	rss int64         // bytes
}

// readProc reads pid's CPU time and resident set size.
func readProc(pid int) (procTimes, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procTimes{}, err
	}
	// The command name in parentheses may hold spaces; fields follow it.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procTimes{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, rss 24.
	if len(f) < 22 {
		return procTimes{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	rss, err3 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procTimes{}, fmt.Errorf("/proc/%d/stat: unreadable times", pid)
	}
	return procTimes{
		cpu: time.Duration(ut+st) * time.Second / clockTicks,
		rss: rss * int64(os.Getpagesize()),
	}, nil
}

// machineBusy reads /proc/stat: CPU time spent busy and in all, summed
// over all CPUs.
func machineBusy() (busy, all time.Duration, err error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: no cpu line")
	}
	var ticks [10]int64
	for i := 1; i < len(f) && i <= 10; i++ {
		ticks[i-1], _ = strconv.ParseInt(f[i], 10, 64)
	}
	var total int64
	for _, t := range ticks[:8] { // guest time is already in user
		total += t
	}
	idle := ticks[3] + ticks[4]
	return time.Duration(total-idle) * time.Second / clockTicks, time.Duration(total) * time.Second / clockTicks, nil
}

// process is one process whose CPU and memory are sampled.
type process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Amtsbote marks the backbone's own processes, whose CPU counts per
	// submission.
	Amtsbote bool `json:"amtsbote"`
}

// sample is one reading of all sampled processes and the machine.
type sample struct {
	At time.Duration `json:"-"`
	// Seconds since the run started.
	T float64 `json:"t"`
	// CPU seconds each process used since the sampler started, by name.
	CPU map[string]float64 `json:"cpuSeconds"`
	// RSS in bytes, by name.
	RSS map[string]int64 `json:"rssBytes"`
	// MachineBusy is the fraction of all CPUs busy since the last sample,
	// whoever used them.
	MachineBusy float64 `json:"machineBusy"`
}

// sampler reads /proc every interval until stopped.
type sampler struct {
	procs []process
	start time.Time
	base  map[string]time.Duration

	mu      sync.Mutex
	samples []sample
}

func newSampler(procs []process, start time.Time) *sampler {
	s := &sampler{procs: procs, start: start, base: map[string]time.Duration{}}
	for _, p := range procs {
		if t, err := readProc(p.PID); err == nil {
			s.base[p.Name] = t.cpu
		}
	}
	return s
}

// run samples every interval until ctx is done.
func (s *sampler) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastBusy, lastAll, _ := machineBusy()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			sm := sample{At: now.Sub(s.start), T: now.Sub(s.start).Seconds(), CPU: map[string]float64{}, RSS: map[string]int64{}}
			for _, p := range s.procs {
				t, err := readProc(p.PID)
				if err != nil {
					continue // it exited
				}
				sm.CPU[p.Name] = (t.cpu - s.base[p.Name]).Seconds()
				sm.RSS[p.Name] = t.rss
			}
			if busy, all, err := machineBusy(); err == nil && all > lastAll {
				sm.MachineBusy = float64(busy-lastBusy) / float64(all-lastAll)
				lastBusy, lastAll = busy, all
			}
			s.mu.Lock()
			s.samples = append(s.samples, sm)
			s.mu.Unlock()
		}
	}
}

// all returns the samples so far.
func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// cpuBetween is the CPU seconds proc used between the samples nearest to
// from and to.
func (s *sampler) cpuBetween(name string, from, to time.Duration) float64 {
	all := s.all()
	at := func(t time.Duration) float64 {
		best, v := time.Duration(1<<62), 0.0
		for _, sm := range all {
			d := sm.At - t
			if d < 0 {
				d = -d
			}
			if d < best {
				best, v = d, sm.CPU[name]
			}
		}
		return v
	}
	return at(to) - at(from)
}

// selfCPU is the CPU time this process used so far.
func selfCPU() time.Duration {
	t, err := readProc(os.Getpid())
	if err != nil {
		return 0
	}
	return t.cpu
}

// settle waits, up to limit, until the machine is quiet (less than
// quietBusy of its CPUs busy over a quarter second) after the disk's
// pending writes: the yardsticks leave gigabytes to be written back and
// a stream to be deleted, which the load's first second would otherwise
// share the machine with. It returns how long it waited.
func settle(ctx context.Context, limit time.Duration) time.Duration {
	start := time.Now()
	syscall.Sync()
	lastBusy, lastAll, err := machineBusy()
	for err == nil && time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(250 * time.Millisecond):
		}
		busy, all, berr := machineBusy()
		if berr != nil || all <= lastAll {
			break
		}
		if float64(busy-lastBusy)/float64(all-lastAll) < quietBusy {
			break
		}
		lastBusy, lastAll = busy, all
	}
	return time.Since(start)
}

// quietBusy is the share of busy CPUs below which settle takes the
// machine as quiet.
const quietBusy = 0.15

// settleLimit bounds the wait for a quiet machine before the load.
const settleLimit = 15 * time.Second
