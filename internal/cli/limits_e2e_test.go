package cli

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vmRSS reads the resident set size of process pid from /proc, in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("read RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// zeros is an endless body of '0's, cut to n bytes by io.LimitReader.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

// TestOversizedUnauthenticatedRequests sends 100 concurrent 11 MiB bodies
// without a token to a real `amtsbote dev` process and checks that its
// resident memory stays within 64 MiB of where it was, during and after.
func TestOversizedUnauthenticatedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the amtsbote binary")
	}
	bin := buildBinary(t)
	c := startChild(t, bin, t.TempDir())
	pid := c.cmd.Process.Pid
	base := c.demo.BaseURL

	// Warm up the paths the burst takes, then take the baseline.
	for range 3 {
		resp, err := http.Post(base+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials&client_id=x&client_secret=y"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	before := vmRSS(t, pid)

	var peak int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss := vmRSS(t, pid); rss > peak {
				peak = rss
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	const n, size = 100, 11 << 20
	type result struct {
		status int
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, ctype := "/token", "application/x-www-form-urlencoded"
			if i%4 == 3 {
				path, ctype = "/v1/submissions", "application/json"
			}
			req, err := http.NewRequest(http.MethodPost, base+path, io.LimitReader(zeros{}, size))
			if err != nil {
				results[i].err = err
				return
			}
			req.Header.Set("Content-Type", ctype)
			if i%2 == 0 {
				// Announced; the others are sent chunked, of unknown length.
				req.ContentLength = size
			}
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Minute}
			resp, err := client.Do(req)
			if err != nil {
				// The server may close the connection while the body is
				// still being sent: that, too, is a refusal.
				results[i].err = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results[i].status = resp.StatusCode
		}()
	}
	wg.Wait()
	after := vmRSS(t, pid)
	close(stop)
	<-sampled
	peak = max(peak, after)

	answered, cut := 0, 0
	for i, r := range results {
		switch {
		case r.err != nil:
			cut++
		case r.status == http.StatusRequestEntityTooLarge || r.status == http.StatusUnauthorized:
			answered++
		default:
			t.Errorf("request %d: status %d, want 413 or 401", i, r.status)
		}
	}
	if answered == 0 {
		t.Error("no request was answered")
	}
	t.Logf("RSS %d MiB before, %d MiB at the peak, %d MiB after; %d answered, %d cut off while sending", before>>20, peak>>20, after>>20, answered, cut)
	if limit := before + 64<<20; peak > limit {
		t.Errorf("RSS rose from %d MiB to %d MiB, more than 64 MiB", before>>20, peak>>20)
	}
	if err := checkHealthy(base); err != nil {
		t.Error(err)
	}
}

// checkHealthy asks the server's health endpoint.
func checkHealthy(base string) error {
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %d", resp.StatusCode)
	}
	return nil
}
