# Amtsbote: `make run` starts everything on embedded defaults, `make test` runs every test.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/amtsbote/amtsbote/internal/cli.Version=$(VERSION)

.PHONY: run build test test-short bench bench-routing loadtest kreis fuzz vet fmt cluster soak

# The Routing API alone on :8081 as well, for clients that take /v1/ as its base.
ROUTING_LISTEN ?= :8081
run:
	$(GO) run -ldflags "$(LDFLAGS)" . dev --routing-listen $(ROUTING_LISTEN)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/amtsbote .

# Four packages at a time: the end-to-end tests spend much of their time
# waiting on processes, leader elections and timers, and two at a time
# (go test's default here) leave a core idle for minutes.
test:
	$(GO) test -race -count=1 -p 4 -timeout 15m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -l -w .

# Benchmarks print figures; none of them asserts a timing. The lifecycle
# load test runs dev as a child process, about a minute in all.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./pkg/set/ ./pkg/store/...
	$(GO) run ./loadtest lifecycle -duration 20s

# A scenario of loadtest/scenarios against dev (started with profiles) and
# the yardsticks measured in the same run; writes report.json, report.html
# and the profiles to loadtest/results/<time>-<scenario> and prints the
# summary table. SCENARIO=burst, DURATION=15s (else the scenario's own),
# LOADTEST_FLAGS='-ack -destinations 100'.
SCENARIO ?= steady
DURATION ?=
loadtest:
	$(GO) run ./loadtest run -scenario $(SCENARIO) $(if $(DURATION),-duration $(DURATION)) $(LOADTEST_FLAGS)

# Amtsbote distributed on this machine, without Docker: three clustered
# nats-server processes (built from go.mod's module), PostgreSQL (the local
# one, database amtsbote_cluster), two gateways behind a load balancer, two
# routers, a ledger, a signer and a delivery role, each its own process;
# prints where each listens; Ctrl-C stops them all.
# CLUSTER_FLAGS=-fresh starts from nothing, -database-url picks another database.
cluster:
	$(GO) run ./cluster $(CLUSTER_FLAGS)

# make cluster on a fresh directory and database, load at 4 submissions per
# second for SOAK_DURATION, the stream leader of INGRESS, INBOX and EVENTS
# killed in turn every 3 minutes and restarted 30 s later; prints
# submissions, failovers, lost, duplicated and p99 submit→accepted during
# failover and outside; fails on any loss or duplicate.
SOAK_DURATION ?= 30m
soak:
	$(GO) run ./cluster soak -duration $(SOAK_DURATION) $(SOAK_FLAGS)

# The routing table at Germany scale (build, bytes per route, resolutions
# per second and p99 on one core), then GET /v1/routes over HTTP.
bench-routing:
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./pkg/routing/
	$(GO) test -run '^$$' -bench 'RoutesHTTP|RouteSignature' -benchmem -benchtime 3s ./services/gateway/

# The subscriber's Kreis test at scale: KREIS_SUBMISSIONS submissions to 50
# destinations of one Kreis, one subscriber process killed and restarted, a
# Fachverfahren failing every tenth first attempt; prints submissions per
# second and submit -> accepted p50/p99. Without -race, about two minutes.
KREIS_SUBMISSIONS ?= 1000
kreis:
	KREIS_SUBMISSIONS=$(KREIS_SUBMISSIONS) $(GO) test -count=1 -timeout 30m -run '^TestKreis$$' -v ./services/subscriber/ | grep -E '^(--- |ok|FAIL|PASS)|kreis_test'

# A short run of every fuzz target; FUZZTIME=5m for a longer one.
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done
