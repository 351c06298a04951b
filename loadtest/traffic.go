package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// demand is one kind of application: a service asked for at a place,
// weighted by the place's population.
type demand struct {
	offer  offer
	ars    string // 12 digits
	region string // the submission's region extension, for a Gemeinde
	weight float64
}

// demands spreads the offers over the places they serve: the Gemeinden of
// a GV100AD directory by population when one is given, else each region's
// own area.
func demands(offers []offer, regions map[string][]string, dir *ars.Directory) []demand {
	var out []demand
	var gemeinden []ars.Area
	byARS := map[string]ars.Area{}
	if dir != nil {
		gemeinden = dir.Areas(ars.Gemeinde)
		for _, a := range gemeinden {
			byARS[a.ARS] = a
		}
	}
	for _, o := range offers {
		for _, r := range regions[o.destination+"|"+o.service] {
			prefix := strings.TrimPrefix(r, "DE")
			if dir != nil {
				// A Gemeinde's region is its ARS: one look-up, not a scan
				// of the directory for each of thousands of destinations.
				candidates := gemeinden
				if a, ok := byARS[prefix]; ok {
					candidates = []ars.Area{a}
				}
				for _, a := range candidates {
					if strings.HasPrefix(a.ARS, prefix) && a.Population > 0 {
						out = append(out, demand{offer: o, ars: a.ARS, region: "DE" + a.ARS, weight: float64(a.Population)})
					}
				}
				continue
			}
			out = append(out, demand{offer: o, ars: prefix + strings.Repeat("0", max(0, 12-len(prefix))), weight: 1})
		}
	}
	return out
}

// picker draws demands by weight.
type picker struct {
	d   []demand
	cum []float64
}

func newPicker(d []demand) *picker {
	p := &picker{d: d}
	sum := 0.0
	for _, x := range d {
		sum += x.weight
		p.cum = append(p.cum, sum)
	}
	return p
}

func (p *picker) pick() demand {
	x := rand.Float64() * p.cum[len(p.cum)-1]
	return p.d[sort.SearchFloat64s(p.cum, x)]
}

// classPicker draws payload classes by weight.
func classPicker(classes []payloadClass) func() int {
	sum := 0.0
	for _, c := range classes {
		sum += c.Weight
	}
	return func() int {
		x := rand.Float64() * sum
		for i, c := range classes {
			if x < c.Weight {
				return i
			}
			x -= c.Weight
		}
		return len(classes) - 1
	}
}

// inflight is a submission between its start and its decision.
type inflight struct {
	destination string
	caseID      string
	sealed      *sealed
	scheduled   time.Time     // when it was due to start
	submitSent  time.Time     // when its submit was sent
	submitted   time.Time     // when its submit was answered
	decided     chan struct{} // closed once its back office decided, or failed to
	// finished is set (under traffic.mu) once a decision seen in EVENTS
	// was counted, with NATS-native receivers.
	finished bool
}

// traffic is the shared state of senders and receivers in one run.
type traffic struct {
	sc      scenario
	base    string
	hc      *http.Client
	rec     *recorder
	pool    *pool
	demands *picker
	class   func() int
	sendTok *client.ClientCredentials
	recvTok *client.ClientCredentials
	dests   map[string]*destination
	receive *client.Receiver

	mu      sync.Mutex
	pending map[string]map[string]*inflight // destination → submission → state, until handed out
	handed  map[string]*inflight
	byID    map[string]*inflight // every submission created, by id
	started atomic.Int64
	done    atomic.Int64
	active  atomic.Int64
}

// sendOne starts one submission due at scheduled: it looks up the route,
// announces, uploads the attachments and submits a pre-encrypted variant.
// It returns the submission under way, nil if it failed.
func (t *traffic) sendOne(ctx context.Context, scheduled time.Time) *inflight {
	t.active.Add(1)
	defer t.active.Add(-1)
	t.started.Add(1)
	d := t.demands.pick()
	dest := d.offer.destination
	if t.sc.RoutesLookup {
		q := url.Values{"leikaKey": {strings.TrimPrefix(d.offer.service, "urn:de:fim:leika:leistung:")}, "ars": {d.ars}}
		var routes struct {
			Routes []struct {
				DestinationID string `json:"destinationId"`
			} `json:"routes"`
		}
		if err := t.call(ctx, nil, http.MethodGet, "/v1/routes?"+q.Encode(), nil, 0, "", http.StatusOK, &routes); err != nil {
			t.rec.fail("routes", err)
			return nil
		}
		if len(routes.Routes) == 0 {
			t.rec.fail("routes", fmt.Errorf("no route for %s in %s", d.offer.service, d.ars))
			return nil
		}
		dest = routes.Routes[0].DestinationID
	}
	variants := t.pool.variants[poolKey{dest, d.offer.service}]
	if variants == nil {
		t.rec.fail("routes", fmt.Errorf("the route names destination %s, which the load test does not know", dest))
		return nil
	}
	class := t.class()
	v := variants[class][rand.IntN(len(variants[class]))]
	body, _ := json.Marshal(map[string]any{
		"destinationId": dest, "announcedAttachments": nonNil(v.attIDs),
		"serviceType": client.ServiceType{Identifier: d.offer.service, Name: "Lasttest"},
		"region":      d.region,
	})
	if d.region == "" {
		body, _ = json.Marshal(map[string]any{
			"destinationId": dest, "announcedAttachments": nonNil(v.attIDs),
			"serviceType": client.ServiceType{Identifier: d.offer.service, Name: "Lasttest"},
		})
	}
	var created struct {
		SubmissionID string `json:"submissionId"`
		CaseID       string `json:"caseId"`
	}
	hdr := http.Header{"Idempotency-Key": {uuid.NewString()}}
	if err := t.call(ctx, t.sendTok, http.MethodPost, "/v1/submissions", bytes.NewReader(body), int64(len(body)), "application/json", http.StatusCreated, &created, hdr); err != nil {
		t.rec.fail("create", err)
		return nil
	}
	f := &inflight{destination: dest, caseID: created.CaseID, sealed: v, scheduled: scheduled, decided: make(chan struct{})}
	t.mu.Lock()
	t.byID[created.SubmissionID] = f
	t.mu.Unlock()
	t.rec.count("created", time.Now())
	for i, id := range v.attIDs {
		r, err := v.atts[i].open()
		if err != nil {
			t.rec.fail("upload", err)
			return nil
		}
		err = t.call(ctx, t.sendTok, http.MethodPut, "/v1/submissions/"+created.SubmissionID+"/attachments/"+id, r, v.atts[i].size, "application/jose", http.StatusNoContent, nil)
		r.Close()
		if err != nil {
			t.rec.fail("upload", err)
			return nil
		}
	}
	t.mu.Lock()
	f.submitSent = time.Now()
	t.mu.Unlock()
	if err := t.call(ctx, t.sendTok, http.MethodPut, "/v1/submissions/"+created.SubmissionID, bytes.NewReader(v.submitBody), int64(len(v.submitBody)), "application/json", http.StatusAccepted, nil); err != nil {
		t.rec.fail("submit", err)
		return nil
	}
	now := time.Now()
	t.rec.observe("ingest", now.Sub(scheduled))
	t.rec.count("submitted", now)
	t.mu.Lock()
	f.submitted = now
	// A NATS-native back office may have decided before the answer came.
	if t.sc.Receivers.Mode != "none" && !f.finished {
		if t.pending[dest] == nil {
			t.pending[dest] = map[string]*inflight{}
		}
		t.pending[dest][created.SubmissionID] = f
	}
	t.mu.Unlock()
	return f
}

// created is this run's submission id, nil for another's.
func (t *traffic) created(id string) *inflight {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

// submitSentAt is when submission id's submit was sent, zero before.
func (t *traffic) submitSentAt(id string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.byID[id]; f != nil {
		return f.submitSent
	}
	return time.Time{}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// call makes one API request with tok's bearer token (none for nil) and
// decodes a JSON answer into out when it is not nil.
func (t *traffic) call(ctx context.Context, tok *client.ClientCredentials, method, path string, body io.Reader, size int64, ctype string, want int, out any, hdr ...http.Header) error {
	return callAPI(ctx, t.hc, t.base, tok, method, path, body, size, ctype, want, out, hdr...)
}

// callAPI makes one request to the API at base with hc and tok's bearer
// token (none for nil): an answer other than want is a *statusError, a
// JSON answer is decoded into out when it is not nil.
func callAPI(ctx context.Context, hc *http.Client, base string, tok *client.ClientCredentials, method, path string, body io.Reader, size int64, ctype string, want int, out any, hdr ...http.Header) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", ctype)
	}
	for _, h := range hdr {
		for k, v := range h {
			req.Header[k] = v
		}
	}
	if tok != nil {
		token, err := tok.Token(ctx)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		if resp.StatusCode == http.StatusUnauthorized && tok != nil {
			tok.Invalidate()
		}
		return &statusError{status: resp.StatusCode, body: string(b)}
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// send starts submissions for sc.Duration: open-loop on a schedule, or
// closed-loop with a fixed number of senders.
func (t *traffic) send(ctx context.Context, start time.Time) {
	ctx, cancel := context.WithDeadline(ctx, start.Add(time.Duration(t.sc.Duration)))
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if t.sc.Arrival.Mode == "closed" {
		for range t.sc.Arrival.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					f := t.sendOne(context.WithoutCancel(ctx), time.Now())
					if f == nil || t.sc.Receivers.Mode == "none" {
						continue
					}
					select {
					case <-f.decided:
					case <-ctx.Done():
					}
				}
			}()
		}
		return
	}
	// Open loop: each start is due at its scheduled time whatever came
	// before; when MaxInFlight are under way the next waits, and its
	// latency counts from when it was due.
	slots := make(chan struct{}, t.sc.Arrival.MaxInFlight)
	next := start
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		due := next
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			t.sendOne(context.WithoutCancel(ctx), due)
		}()
		next = next.Add(time.Duration(float64(time.Second) / t.sc.rateAt(next.Sub(start))))
	}
}

// receiveAll runs the back offices until every started submission was
// decided, or drain passed after sendersDone.
func (t *traffic) receiveAll(ctx context.Context, sendersDone <-chan struct{}) error {
	slow := map[string]bool{}
	if s := t.sc.Receivers.Slow; s != nil {
		for i, d := range sortedKeys(t.dests) {
			if i < s.Destinations {
				slow[d] = true
			}
		}
	}
	// A slow back office has workers of its own, as a real one does.
	fast, slowQ := make(chan string, 1024), make(chan string, 1024)
	var wg sync.WaitGroup
	for range t.sc.Receivers.Workers {
		wg.Add(2)
		go func() { defer wg.Done(); t.work(ctx, fast, 0) }()
		go func() { defer wg.Done(); t.work(ctx, slowQ, t.slowDelay()) }()
	}
	err := t.list(ctx, sendersDone, func(dest, sid string) {
		if slow[dest] {
			slowQ <- sid
		} else {
			fast <- sid
		}
	})
	close(fast)
	close(slowQ)
	wg.Wait()
	return err
}

func (t *traffic) slowDelay() time.Duration {
	if t.sc.Receivers.Slow == nil {
		return 0
	}
	return time.Duration(t.sc.Receivers.Slow.Delay)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// list polls the pickup lists of destinations with submissions under way
// and hands each of this run's submissions out once.
func (t *traffic) list(ctx context.Context, sendersDone <-chan struct{}, hand func(dest, sid string)) error {
	var drainBy <-chan time.Time
	for {
		t.mu.Lock()
		var dests []string
		for d, m := range t.pending {
			if len(m) > 0 {
				dests = append(dests, d)
			}
		}
		t.mu.Unlock()
		found := 0
		for _, d := range dests {
			for offset := 0; ; offset += 500 {
				page, err := t.receiverOf(d).ListSubmissions(ctx, d, 500, offset)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					t.rec.fail("list", err)
					break
				}
				now := time.Now()
				for _, p := range page.Submissions {
					t.mu.Lock()
					f, ok := t.pending[d][p.SubmissionID]
					if ok {
						delete(t.pending[d], p.SubmissionID)
						t.handed[p.SubmissionID] = f
					}
					t.mu.Unlock()
					if !ok {
						continue
					}
					found++
					t.rec.observe("submitted→listed", now.Sub(f.submitted))
					t.rec.count("routed", now)
					hand(d, p.SubmissionID)
				}
				if len(page.Submissions) < 500 {
					break
				}
			}
		}
		select {
		case <-sendersDone:
			if drainBy == nil {
				drainBy = time.After(time.Duration(t.sc.Drain))
			}
			if t.active.Load() == 0 && t.pendingCount() == 0 {
				return nil
			}
		default:
		}
		if found > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-drainBy:
			return fmt.Errorf("%d submitted submissions were not listed within %s after the senders stopped", t.pendingCount(), time.Duration(t.sc.Drain))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (t *traffic) pendingCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.pending {
		n += len(m)
	}
	return n
}

// work decides the submissions of queue, each after delay.
func (t *traffic) work(ctx context.Context, queue <-chan string, delay time.Duration) {
	for sid := range queue {
		t.mu.Lock()
		f := t.handed[sid]
		t.mu.Unlock()
		t0 := time.Now()
		var err error
		if t.sc.Receivers.Mode == "ack" {
			err = t.ackOnly(ctx, sid, f, delay)
		} else {
			err = t.pickUp(ctx, sid, f, delay)
		}
		close(f.decided)
		if err != nil {
			if ctx.Err() == nil {
				t.rec.fail("decide", err)
			}
			continue
		}
		now := time.Now()
		t.rec.observe("listed→accepted", now.Sub(t0))
		t.rec.observe("lifecycle", now.Sub(f.scheduled))
		if t.sc.Receivers.Slow != nil {
			// The slow office's lifecycles apart from the others', which
			// must not wait for it.
			office := "lifecycle, other offices"
			if delay > 0 {
				office = "lifecycle, slow office"
			}
			t.rec.observe(office, now.Sub(f.scheduled))
		}
		t.rec.count("accepted", now)
		t.done.Add(1)
	}
}

// receiverOf is the back office of destination id: its own when it has
// one, else the run's one receiver.
func (t *traffic) receiverOf(id string) *client.Receiver {
	if d := t.dests[id]; d != nil && d.receive != nil {
		return d.receive
	}
	return t.receive
}

// tokenOf is the token source of destination id's back office.
func (t *traffic) tokenOf(id string) *client.ClientCredentials {
	if d := t.dests[id]; d != nil && d.tok != nil {
		return d.tok
	}
	return t.recvTok
}

// pickUp is the project's own receiver: fetch, decrypt and check with
// pkg/client, then accept.
func (t *traffic) pickUp(ctx context.Context, sid string, f *inflight, delay time.Duration) error {
	dest := t.dests[f.destination]
	receive := t.receiverOf(f.destination)
	giveUp := time.Now().Add(30 * time.Second)
	for {
		rec, err := receive.Fetch(ctx, sid, dest.ring)
		if errors.Is(err, client.ErrNoEvents) && time.Now().Before(giveUp) {
			if !sleep(ctx, 50*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return err
		}
		defer rec.Close()
		sleep(ctx, delay)
		return receive.Accept(ctx, rec, dest.signer)
	}
}

// ackOnly downloads the sealed submission and its attachments without
// decrypting them and accepts with the tags the sender sealed: the
// backbone's work alone.
func (t *traffic) ackOnly(ctx context.Context, sid string, f *inflight, delay time.Duration) error {
	dest := t.dests[f.destination]
	tok := t.tokenOf(f.destination)
	if err := t.call(ctx, tok, http.MethodGet, "/v1/submissions/"+sid, nil, 0, "", http.StatusOK, nil); err != nil {
		return fmt.Errorf("fetch %s: %w", sid, err)
	}
	for _, id := range f.sealed.attIDs {
		if err := t.call(ctx, tok, http.MethodGet, "/v1/submissions/"+sid+"/attachments/"+id, nil, 0, "", http.StatusOK, nil); err != nil {
			return fmt.Errorf("download %s: %w", id, err)
		}
	}
	sleep(ctx, delay)
	claims, err := set.New(set.AcceptSubmission, f.destination, sid, f.caseID, set.AcceptPayload{AuthenticationTags: f.sealed.tags}, time.Now())
	if err != nil {
		return err
	}
	token, err := set.Sign(claims, dest.signer.Private, dest.signer.Public.KeyID)
	if err != nil {
		return err
	}
	// The backbone records the submit event off the request path; an
	// accept before it is refused and posted again.
	giveUp := time.Now().Add(30 * time.Second)
	for {
		err := t.call(ctx, tok, http.MethodPost, "/v1/cases/"+f.caseID+"/events", strings.NewReader(token), int64(len(token)), "application/jose", http.StatusNoContent, nil)
		var se *statusError
		if errors.As(err, &se) && se.status == http.StatusConflict && time.Now().Before(giveUp) {
			if !sleep(ctx, 50*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		return err
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// readDirectory parses a GV100AD file, or returns nil for "".
func readDirectory(path string) (*ars.Directory, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := ars.ParseGV100AD(f)
	if err != nil {
		return nil, fmt.Errorf("read GV100AD %s: %w", path, err)
	}
	return d, nil
}
