package token

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

const (
	// oidcRefetchInterval bounds how often an unknown kid may trigger a
	// fetch of the issuer's keys, so tokens with made-up kids cannot turn
	// the gateway into a load generator against the issuer.
	oidcRefetchInterval = time.Minute
	// oidcMaxAge is how long fetched keys are used before they are fetched
	// again on the next request.
	oidcMaxAge = time.Hour
	// oidcMaxDocument bounds discovery documents and key sets.
	oidcMaxDocument = 1 << 20
)

// oidcKeys caches the signing keys of an external OpenID Connect issuer.
type oidcKeys struct {
	issuer string
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex // held across fetches: one fetch at a time
	keys      map[string]gojose.JSONWebKey
	jwksURI   string
	fetchedAt time.Time // last attempt, successful or not
	loadedAt  time.Time // last success
}

func newOIDCKeys(issuer string, client *http.Client, now func() time.Time, log *slog.Logger) *oidcKeys {
	return &oidcKeys{issuer: issuer, client: client, now: now, log: log}
}

// key returns the issuer's key kid, fetching the key set when the kid is
// unknown (at most once per oidcRefetchInterval) or the cache is stale.
func (o *oidcKeys) key(ctx context.Context, kid string) (gojose.JSONWebKey, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	k, known := o.keys[kid]
	stale := o.loadedAt.IsZero() || now.Sub(o.loadedAt) > oidcMaxAge
	mayFetch := o.fetchedAt.IsZero() || now.Sub(o.fetchedAt) >= oidcRefetchInterval
	if (!known || stale) && mayFetch {
		o.fetchedAt = now
		if err := o.fetch(ctx); err != nil {
			o.log.WarnContext(ctx, "fetch oidc keys", "issuer", o.issuer, "err", err)
			if known {
				// A stale key beats none while the issuer is unreachable.
				return k, nil
			}
			return gojose.JSONWebKey{}, problem.Unavailable(fmt.Sprintf("the keys of token issuer %s cannot be fetched now", o.issuer))
		}
		o.loadedAt = now
		k, known = o.keys[kid]
	}
	if !known {
		return gojose.JSONWebKey{}, httpapi.InvalidToken("issuer %s has no key %q", o.issuer, kid)
	}
	return k, nil
}

// fetch discovers the jwks_uri (once) and loads the key set.
func (o *oidcKeys) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if o.jwksURI == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := o.getJSON(ctx, o.issuer+"/.well-known/openid-configuration", &doc); err != nil {
			return fmt.Errorf("discover: %w", err)
		}
		if doc.Issuer != o.issuer {
			return fmt.Errorf("discover: document names issuer %q, want %q", doc.Issuer, o.issuer)
		}
		if doc.JWKSURI == "" {
			return fmt.Errorf("discover: no jwks_uri")
		}
		o.jwksURI = doc.JWKSURI
	}
	var set gojose.JSONWebKeySet
	if err := o.getJSON(ctx, o.jwksURI, &set); err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	keys := make(map[string]gojose.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.IsPublic() && k.Valid() {
			keys[k.KeyID] = k
		}
	}
	o.keys = keys
	return nil
}

func (o *oidcKeys) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oidcMaxDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if len(body) > oidcMaxDocument {
		return fmt.Errorf("GET %s: document larger than %d bytes", url, oidcMaxDocument)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}
