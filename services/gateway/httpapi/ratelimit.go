package httpapi

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/amtsbote/amtsbote/pkg/netguard"
	"github.com/amtsbote/amtsbote/pkg/problem"
)

// Limiter is a token bucket per client address: burst requests at
// once, refilled at limit per second. Buckets idle long enough to be full
// again are forgotten, so memory stays bounded by the active clients.
type Limiter struct {
	limit rate.Limit
	burst int

	// answer is the Content-Type of Throttle's 429.
	answer string

	mu      sync.Mutex
	clients map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	lim     *rate.Limiter
	seen    time.Time
	pending int // attempts admitted by Reserve and not yet settled
}

// NewLimiter returns a limiter of perSecond requests per client address,
// burst at once.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, answer: problem.ContentType, clients: make(map[string]*bucket)}
}

// AnswerJSON makes Throttle answer 429 as application/json, the body the
// same problem, as FIT-Connect's Routing API declares its 429. It returns
// l.
func (l *Limiter) AnswerJSON() *Limiter {
	l.answer = "application/json"
	return l
}

// take spends one token of client's bucket. It reports whether the request
// may pass, the tokens left and the time until the bucket is full again
// (or, when the request may not pass, until the next token).
func (l *Limiter) take(client string, now time.Time) (bool, int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(client, now)
	ok := b.lim.AllowN(now, 1)
	tokens := b.lim.TokensAt(now)
	if !ok {
		return false, 0, secondsFor(1-tokens, l.limit)
	}
	return true, int(math.Floor(tokens)), secondsFor(float64(l.burst)-tokens, l.limit)
}

// bucket returns key's bucket, forgetting the ones full again. l.mu is held.
func (l *Limiter) bucket(key string, now time.Time) *bucket {
	full := time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
	if now.Sub(l.sweep) > full {
		for k, b := range l.clients {
			if now.Sub(b.seen) > full && b.pending == 0 {
				delete(l.clients, k)
			}
		}
		l.sweep = now
	}
	b := l.clients[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = b
	}
	b.seen = now
	return b
}

// Reserve admits an attempt of key that may fail, such as a login, while
// key has a token that the attempts still under way have not claimed;
// otherwise it reports how long to wait. The attempt is settled with
// done: a failure spends the token, anything else leaves it. Attempts
// under way claim tokens without spending them, so any number of them
// succeeding at once costs nothing, and no more attempts can fail than
// the bucket holds.
func (l *Limiter) Reserve(key string, now time.Time) (ok bool, wait time.Duration, done func(failed bool, now time.Time)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	if free := b.lim.TokensAt(now) - float64(b.pending); free < 1 {
		return false, secondsFor(1-free, l.limit), nil
	}
	b.pending++
	var once sync.Once
	return true, 0, func(failed bool, now time.Time) {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			b.pending--
			if failed {
				// Reserving, unlike Allow, spends the token even if
				// the bucket ran dry meanwhile.
				b.lim.ReserveN(now, 1)
			}
		})
	}
}

func secondsFor(tokens float64, limit rate.Limit) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(tokens / float64(limit) * float64(time.Second))
}

// ClientAddress is the client's IP: the peer's, or behind trusted
// proxies the forwarded one.
func ClientAddress(r *http.Request) string {
	if a, ok := r.Context().Value(clientAddressKey{}).(string); ok {
		return a
	}
	return peerAddress(r)
}

// AddressKey is the key of a request's per-address limits: the client's
// IPv4 address, or an IPv6 client's /64, the least a site is given, so
// that one site's many addresses share one limit. IPv4 clients behind
// NAT64 (64:ff9b::/96) or 6to4 count by their IPv4 address
// (netguard.Embedded4), loopback and link-local ones by their whole
// address.
func AddressKey(r *http.Request) string {
	return limitKey(ClientAddress(r))
}

func limitKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.WithZone("")
	if v4, ok := netguard.Embedded4(a); ok {
		a = v4
	}
	if a.Is4() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// peerAddress is the address the connection comes from.
func peerAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type clientAddressKey struct{}

// TrustProxies returns h with ClientAddress taken from X-Forwarded-For
// when the request comes from one of the trusted proxies (a load balancer,
// an ingress): the rightmost address there that is not itself trusted, as
// each proxy appends the address it was reached from. A request from
// anywhere else keeps its peer's address, whatever it claims.
func TrustProxies(trusted []netip.Prefix, h http.Handler) http.Handler {
	isTrusted := func(s string) bool {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := peerAddress(r)
		if isTrusted(addr) {
			hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				hop := strings.TrimSpace(hops[i])
				if _, err := netip.ParseAddr(hop); err != nil {
					break // garbage ends what can be believed
				}
				addr = hop
				if !isTrusted(hop) {
					break
				}
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientAddressKey{}, addr)))
	})
}

// Limited runs h within the client's rate limit of l (Throttle).
func (a *API) Limited(l *Limiter, h PublicHandler) http.Handler {
	return a.Throttle(l, a.public(h))
}

// The RateLimit header fields' names in net/http's canonical form.
var (
	headerLimit     = http.CanonicalHeaderKey("RateLimit-Limit")
	headerRemaining = http.CanonicalHeaderKey("RateLimit-Remaining")
	headerReset     = http.CanonicalHeaderKey("RateLimit-Reset")
	headerPolicy    = http.CanonicalHeaderKey("RateLimit-Policy")
)

// Throttle runs h within the client's rate limit of l and answers with
// the RateLimit-Limit, -Remaining and -Reset headers as the IETF draft
// (RFC 9331's successor) means them: the quota of a window (the sustained
// rate over a window of whole seconds), what is left of it, and the
// seconds until it is whole again; RateLimit-Policy names the window and
// the burst. Over the limit it answers 429 with Retry-After. A nil l lets
// every request through.
func (a *API) Throttle(l *Limiter, h http.Handler) http.Handler {
	if l == nil {
		return h
	}
	quota, limit, policy := l.policy()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, _, reset := l.take(AddressKey(r), time.Now())
		secs := strconv.Itoa(int(math.Ceil(reset.Seconds())))
		remaining, whole := 0.0, reset
		if ok {
			tokens := float64(l.burst) - reset.Seconds()*float64(l.limit)
			remaining = math.Min(math.Floor(tokens+1e-9), quota)
			whole = secondsFor(quota-tokens, l.limit)
		}
		hd := w.Header()
		hd[headerLimit] = []string{limit}
		hd[headerRemaining] = []string{strconv.Itoa(int(remaining))}
		hd[headerReset] = []string{strconv.Itoa(int(math.Ceil(whole.Seconds())))}
		hd[headerPolicy] = []string{policy}
		if !ok {
			w.Header().Set("Retry-After", secs)
			a.WriteErrorAs(w, r, problem.TooManyRequests(fmt.Sprintf("more than %d requests at once or %g per second from %s; retry in %s s", l.burst, float64(l.limit), AddressKey(r), secs)), l.answer)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// policy returns l's quota, a window of whole seconds at its sustained
// rate, and the RateLimit-Limit and RateLimit-Policy values that say so.
func (l *Limiter) policy() (quota float64, limit, policy string) {
	window := math.Max(1, math.Ceil(1/float64(l.limit)))
	quota = math.Max(1, math.Floor(float64(l.limit)*window))
	return quota, strconv.Itoa(int(quota)), fmt.Sprintf("%d;w=%d;burst=%d", int(quota), int(window), l.burst)
}

// Unauthenticated limits h, a route anyone may call, to the per-address
// rate of PublicLimit.
func (a *API) Unauthenticated(h http.Handler) http.Handler {
	return a.Throttle(a.PublicLimit, h)
}

// Rate is a token bucket's shape: Burst at once, refilled at PerSecond.
type Rate struct {
	PerSecond float64
	Burst     int
}

// NewLimiter returns a per-key limiter of r, or nil when r is zero.
func (r Rate) NewLimiter() *Limiter {
	if r.PerSecond <= 0 || r.Burst <= 0 {
		return nil
	}
	return NewLimiter(r.PerSecond, r.Burst)
}

// retryError is a problem answered with a Retry-After header; by, when
// set, is the limit that refused it, which the RateLimit headers describe.
type retryError struct {
	p     *problem.Problem
	after time.Duration
	by    *Limiter
}

func (e *retryError) Error() string { return e.p.Error() }
func (e *retryError) Unwrap() error { return e.p }

// RetryAfter answers p with Retry-After: after, in whole seconds rounded
// up, at least one.
func RetryAfter(p *problem.Problem, after time.Duration) error {
	return &retryError{p: p, after: after}
}

// Refused is RetryAfter for a 429 of l's: its RateLimit headers describe
// l, not the route's own limit, under which the request still was.
func (l *Limiter) Refused(p *problem.Problem, after time.Duration) error {
	return &retryError{p: p, after: after, by: l}
}

// retrySeconds is d as a Retry-After value.
func retrySeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
