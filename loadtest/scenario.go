package main

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// scenarioFiles are the scenarios `run -scenario NAME` finds by name.
//
//go:embed scenarios/*.json
var scenarioFiles embed.FS

// duration is a time.Duration written as "60s" in scenario files.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"60s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// scenario is one load shape, read from loadtest/scenarios/NAME.json.
type scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Duration is how long senders start submissions; DURATION= overrides it.
	Duration duration `json:"duration"`
	// Drain is how long receivers may finish what was started afterwards.
	Drain   duration `json:"drain"`
	Arrival arrival  `json:"arrival"`
	// Payloads is the mix of payload classes, drawn by weight.
	Payloads []payloadClass `json:"payloads"`
	// RoutesLookup makes each sender ask GET /v1/routes for the place and
	// service before it submits, as a portal does.
	RoutesLookup bool      `json:"routesLookup"`
	Receivers    receivers `json:"receivers"`
	// Destinations is how many destinations the target must offer; the
	// traffic is spread over all it offers. Dev is given those it lacks
	// (provision.go); -destinations overrides the count.
	Destinations int `json:"destinations"`
	// Pool is how many pre-encrypted variants of each payload class are
	// made per destination.
	Pool int `json:"pool"`
	// Routes measures GET /v1/routes against a bare handler.
	Routes routesBench `json:"routes"`
	// Yardsticks is how long each raw yardstick runs.
	Yardsticks duration `json:"yardsticks"`
}

// arrival is how submissions are started: "open" at Rate per second
// (latency is measured from each submission's scheduled start, so a slow
// answer does not hide the wait it causes), or "closed" with Concurrency
// senders each starting the next once its back office decided the last:
// that many lifecycles under way, no queue building up.
type arrival struct {
	Mode        string  `json:"mode"`
	Rate        float64 `json:"rate"`
	Concurrency int     `json:"concurrency"`
	// MaxInFlight bounds open-loop submissions under way at once; a start
	// beyond it waits, and its wait counts in its latency.
	MaxInFlight int    `json:"maxInFlight"`
	Burst       *burst `json:"burst,omitempty"`
}

// burst multiplies the open-loop rate by Factor for For, starting at the
// fraction At of the duration (a deadline rush).
type burst struct {
	At     float64  `json:"at"`
	For    duration `json:"for"`
	Factor float64  `json:"factor"`
}

// payloadClass is one kind of submission: its data size and attachments.
type payloadClass struct {
	Name        string  `json:"name"`
	Weight      float64 `json:"weight"`
	Data        int64   `json:"data"`
	Attachments []int64 `json:"attachments"`
}

// receivers are the simulated back offices.
type receivers struct {
	// Mode "sdk" fetches, decrypts, checks and accepts with pkg/client
	// over HTTP pull; "nats" is services/subscriber, NATS-native, on the
	// target's INBOX (Workers at a time), fetching, decrypting, checking
	// and accepting through the API; "ack" downloads the sealed submission
	// and accepts it without decrypting, to measure the backbone alone;
	// "none" picks nothing up, to measure ingest: the run watches the
	// target's NATS for each submission's routing and its SETs' signing,
	// and drains until the signing caught up.
	Mode    string `json:"mode"`
	Workers int    `json:"workers"`
	// Slow makes the back office of the first Slow.Destinations
	// destinations take Slow.Delay for each submission before it decides.
	Slow *slowOffice `json:"slow,omitempty"`
}

type slowOffice struct {
	Destinations int      `json:"destinations"`
	Delay        duration `json:"delay"`
}

type routesBench struct {
	Concurrency int      `json:"concurrency"`
	For         duration `json:"for"`
}

// loadScenario reads name: a path to a JSON file, or the name of one in
// loadtest/scenarios.
func loadScenario(name string) (scenario, error) {
	var raw []byte
	var err error
	if strings.HasSuffix(name, ".json") || strings.ContainsRune(name, filepath.Separator) {
		raw, err = os.ReadFile(name)
	} else {
		raw, err = scenarioFiles.ReadFile("scenarios/" + name + ".json")
		if errors.Is(err, os.ErrNotExist) {
			return scenario{}, fmt.Errorf("scenario %q: no loadtest/scenarios/%s.json; there are %s", name, name, strings.Join(scenarioNames(), ", "))
		}
	}
	if err != nil {
		return scenario{}, fmt.Errorf("scenario %s: %w", name, err)
	}
	var sc scenario
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return scenario{}, fmt.Errorf("scenario %s: %w", name, err)
	}
	sc.defaults()
	if err := sc.check(); err != nil {
		return scenario{}, fmt.Errorf("scenario %s: %w", name, err)
	}
	return sc, nil
}

func scenarioNames() []string {
	entries, _ := scenarioFiles.ReadDir("scenarios")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	return names
}

func (sc *scenario) defaults() {
	if sc.Drain == 0 {
		sc.Drain = duration(time.Minute)
	}
	if sc.Arrival.MaxInFlight == 0 {
		sc.Arrival.MaxInFlight = 256
	}
	if sc.Receivers.Mode == "" {
		sc.Receivers.Mode = "sdk"
	}
	if sc.Receivers.Workers == 0 {
		sc.Receivers.Workers = 8
	}
	if sc.Destinations == 0 {
		sc.Destinations = 1
	}
	if sc.Pool == 0 {
		sc.Pool = 4
	}
	if sc.Routes.Concurrency == 0 {
		sc.Routes.Concurrency = 4
	}
	if sc.Routes.For == 0 {
		sc.Routes.For = duration(5 * time.Second)
	}
	if sc.Yardsticks == 0 {
		sc.Yardsticks = duration(3 * time.Second)
	}
	for i := range sc.Payloads {
		if sc.Payloads[i].Name == "" {
			sc.Payloads[i].Name = fmt.Sprintf("class%d", i+1)
		}
	}
}

func (sc *scenario) check() error {
	switch {
	case sc.Duration <= 0:
		return errors.New("duration must be positive")
	case sc.Arrival.Mode == "open" && sc.Arrival.Rate <= 0:
		return errors.New("an open arrival needs a positive rate")
	case sc.Arrival.Mode == "closed" && sc.Arrival.Concurrency < 1:
		return errors.New("a closed arrival needs a concurrency of at least 1")
	case sc.Arrival.Mode != "open" && sc.Arrival.Mode != "closed":
		return fmt.Errorf("arrival mode %q: want open or closed", sc.Arrival.Mode)
	case sc.Receivers.Mode != "sdk" && sc.Receivers.Mode != "nats" && sc.Receivers.Mode != "ack" && sc.Receivers.Mode != "none":
		return fmt.Errorf("receivers mode %q: want sdk, nats, ack or none", sc.Receivers.Mode)
	case len(sc.Payloads) == 0:
		return errors.New("at least one payload class is required")
	}
	if sc.Receivers.Mode == "nats" && sc.Receivers.Slow != nil {
		return errors.New("receivers nats: a slow back office is one of sdk or ack")
	}
	if b := sc.Arrival.Burst; b != nil && (b.At < 0 || b.At >= 1 || b.Factor <= 0 || b.For <= 0) {
		return errors.New("burst: at is a fraction of the duration in [0,1), factor and for are positive")
	}
	for _, p := range sc.Payloads {
		if p.Weight <= 0 || p.Data < 0 || (p.Data == 0 && len(p.Attachments) == 0) {
			return fmt.Errorf("payload %s: a positive weight, and data or attachments", p.Name)
		}
		if p.Data > 0 && p.Data < 16 {
			return fmt.Errorf("payload %s: data of at least 16 bytes", p.Name)
		}
		for _, a := range p.Attachments {
			if a < 1 {
				return fmt.Errorf("payload %s: attachments of at least one byte", p.Name)
			}
		}
	}
	return nil
}

// rateAt is the open-loop rate at offset t into the run.
func (sc *scenario) rateAt(t time.Duration) float64 {
	r := sc.Arrival.Rate
	if b := sc.Arrival.Burst; b != nil {
		start := time.Duration(b.At * float64(sc.Duration))
		if t >= start && t < start+time.Duration(b.For) {
			r *= b.Factor
		}
	}
	return r
}
