package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEveryScenarioLoads(t *testing.T) {
	names := scenarioNames()
	for _, want := range []string{"steady", "burst", "big-attachments", "many-destinations", "slow-backoffice", "ingest"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("scenario %s missing from %v", want, names)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			sc, err := loadScenario(name)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Name != name {
				t.Errorf("scenario file %s names itself %q", name, sc.Name)
			}
		})
	}
	sc, _ := loadScenario("steady")
	if time.Duration(sc.Duration) != time.Minute {
		t.Errorf("steady runs %s, want the 60 s make loadtest promises", time.Duration(sc.Duration))
	}
}

func TestLoadScenarioRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	form := `"payloads": [{"weight": 1, "data": 1024}]`
	for _, tt := range []struct {
		name, body, want string
	}{
		{"unknown field", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1}, ` + form + `, "rate": 5}`, `unknown field "rate"`},
		{"duration not a string", `{"duration": 60, "arrival": {"mode": "open", "rate": 1}, ` + form + `}`, "a duration is a string"},
		{"no duration", `{"arrival": {"mode": "open", "rate": 1}, ` + form + `}`, "duration must be positive"},
		{"open without a rate", `{"duration": "1s", "arrival": {"mode": "open"}, ` + form + `}`, "positive rate"},
		{"closed without senders", `{"duration": "1s", "arrival": {"mode": "closed"}, ` + form + `}`, "concurrency of at least 1"},
		{"unknown arrival", `{"duration": "1s", "arrival": {"mode": "poisson", "rate": 1}, ` + form + `}`, `arrival mode "poisson"`},
		{"unknown receivers", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1}, "receivers": {"mode": "fax"}, ` + form + `}`, `receivers mode "fax"`},
		{"slow NATS-native office", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1}, "receivers": {"mode": "nats", "slow": {"destinations": 1, "delay": "1s"}}, ` + form + `}`, "a slow back office is one of sdk or ack"},
		{"no payloads", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1}}`, "at least one payload class"},
		{"empty payload", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1}, "payloads": [{"name": "nil", "weight": 1}]}`, "payload nil: a positive weight, and data or attachments"},
		{"tiny data", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1}, "payloads": [{"name": "tiny", "weight": 1, "data": 8}]}`, "payload tiny: data of at least 16 bytes"},
		{"empty attachment", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1}, "payloads": [{"name": "a", "weight": 1, "attachments": [0]}]}`, "attachments of at least one byte"},
		{"burst past the end", `{"duration": "1s", "arrival": {"mode": "open", "rate": 1, "burst": {"at": 1, "for": "1s", "factor": 10}}, ` + form + `}`, "burst:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadScenario(write(strings.ReplaceAll(tt.name, " ", "-")+".json", tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
	if _, err := loadScenario("nonesuch"); err == nil || !strings.Contains(err.Error(), "there are ") {
		t.Errorf("unknown name: err = %v, want the names there are", err)
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadScenario(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("a missing file loaded")
	}
	p := filepath.Join(dir, "minimal.json")
	if err := os.WriteFile(p, []byte(`{"duration": "1s", "arrival": {"mode": "closed", "concurrency": 2}, "payloads": [{"weight": 1, "data": 1024}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := loadScenario(p)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Receivers.Mode != "sdk" || sc.Receivers.Workers != 8 || sc.Destinations != 1 || sc.Pool != 4 ||
		time.Duration(sc.Drain) != time.Minute || sc.Arrival.MaxInFlight != 256 || sc.Payloads[0].Name != "class1" {
		t.Errorf("defaults not applied: %+v", sc)
	}
}

func TestRateAtFollowsTheBurst(t *testing.T) {
	sc, err := loadScenario("burst")
	if err != nil {
		t.Fatal(err)
	}
	b := sc.Arrival.Burst
	if b == nil {
		t.Fatal("burst scenario without a burst")
	}
	start := time.Duration(b.At * float64(sc.Duration))
	end := start + time.Duration(b.For)
	base := sc.Arrival.Rate
	for _, tt := range []struct {
		at   time.Duration
		want float64
	}{{0, base}, {start - time.Millisecond, base}, {start, base * b.Factor}, {end - time.Millisecond, base * b.Factor}, {end, base}} {
		if got := sc.rateAt(tt.at); got != tt.want {
			t.Errorf("rateAt(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
}
