package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOverload sends a burst of creates far above what a dev process
// bounded to 4 requests at once, waiting 5 ms for a slot, serves: every answer is 201, or 503 or 429
// with Retry-After; none times out or is cut; every 201 names a case that
// exists afterwards; and the process's RSS stays bounded. The peak RSS is
// logged.
func TestOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const burst = 600
	bin := buildBinary(t)
	// A slot is waited for briefly: a burst this machine drains within
	// the default second would be queued, not refused.
	dev := startChild(t, bin, t.TempDir(), "--max-in-flight", "4", "--in-flight-wait", "5ms")
	d := dev.demo
	var sender demoClient
	for _, c := range d.Clients {
		if c.Role == "sender" {
			sender = c
		}
	}
	resp, err := http.PostForm(d.TokenURL, url.Values{"grant_type": {"client_credentials"}, "client_id": {sender.ClientID}, "client_secret": {sender.ClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if err != nil || tr.AccessToken == "" {
		t.Fatalf("token: %v", err)
	}
	dest := d.Destinations[0]
	body, err := json.Marshal(map[string]any{
		"destinationId":        dest.DestinationID,
		"announcedAttachments": []string{},
		"serviceType":          map[string]any{"name": "Gewerbeanmeldung", "identifier": dest.Services[0]},
		"region":               dest.Region,
	})
	if err != nil {
		t.Fatal(err)
	}

	pid := dev.cmd.Process.Pid
	before := vmRSS(t, pid)
	var peak atomic.Int64
	peak.Store(before)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if rss := vmRSS(t, pid); rss > peak.Load() {
					peak.Store(rss)
				}
			}
		}
	}()

	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: burst}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu      sync.Mutex
		codes   = map[int]int{}
		cases   []string
		noRetry int
		failed  []error
	)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.BaseURL+"/v1/submissions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				mu.Lock()
				failed = append(failed, err)
				mu.Unlock()
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			mu.Lock()
			defer mu.Unlock()
			codes[resp.StatusCode]++
			switch resp.StatusCode {
			case http.StatusCreated:
				var c struct {
					CaseID string `json:"caseId"`
				}
				if err := json.Unmarshal(raw, &c); err != nil {
					failed = append(failed, fmt.Errorf("201 body %s: %w", raw, err))
					return
				}
				cases = append(cases, c.CaseID)
			case http.StatusServiceUnavailable, http.StatusTooManyRequests:
				if resp.Header.Get("Retry-After") == "" {
					noRetry++
				}
			default:
				failed = append(failed, fmt.Errorf("status %d: %s", resp.StatusCode, raw))
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)
	close(stop)
	<-sampled

	t.Logf("burst of %d creates in %v: answers %v; RSS %.1f MiB before, peak %.1f MiB",
		burst, took.Round(time.Millisecond), codes, float64(before)/(1<<20), float64(peak.Load())/(1<<20))
	for i, err := range failed {
		if i == 5 {
			t.Errorf("… and %d more", len(failed)-5)
			break
		}
		t.Errorf("request failed instead of being refused: %v", err)
	}
	if noRetry > 0 {
		t.Errorf("%d refusals without Retry-After", noRetry)
	}
	if codes[http.StatusServiceUnavailable]+codes[http.StatusTooManyRequests] == 0 {
		t.Errorf("no request was refused: the burst did not reach the bound")
	}
	if grew := peak.Load() - before; grew > 256<<20 {
		t.Errorf("RSS grew by %.1f MiB under the burst; want less than 256 MiB", float64(grew)/(1<<20))
	}

	// Every create that was answered 201 was kept.
	sort.Strings(cases)
	for _, id := range cases {
		req, _ := http.NewRequest(http.MethodGet, d.BaseURL+"/v1/cases/"+id+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("case %s of a 201 answers %d", id, resp.StatusCode)
		}
	}
}
