// Package destination serves FIT-Connect's destination endpoints: a
// destination (its public view for senders, its private view for its
// receivers and managers) and its public keys, and the management
// endpoints (list, create, replace, patch, delete, add a key) with
// FIT-Connect's scopes. Changes go through the registry operations, as the
// operator API's do. It also renders the views the operator API shows.
package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// Public is FIT-Connect's PublicDestination: what a sender may see.
type Public struct {
	DestinationID    string                  `json:"destinationId"`
	Status           store.DestinationStatus `json:"status"`
	Services         []store.Service         `json:"services"`
	EncryptionKID    string                  `json:"encryptionKid"`
	MetadataVersions []string                `json:"metadataVersions"`
	ReplyChannels    json.RawMessage         `json:"replyChannels,omitempty"`
}

// Private is FIT-Connect's PrivateDestination: what the
// destination's own receivers and managers see. The callback secret is
// write-only and never shown.
type Private struct {
	Public
	ContactInformation store.ContactInformation `json:"contactInformation"`
	Callback           *callbackView            `json:"callback,omitempty"`
}

// callbackView shows a callback without its secret.
type callbackView struct {
	URL string `json:"url"`
}

// Admin is the operator's view: everything but the callback secret.
type Admin struct {
	Private
	SigningKID string    `json:"signingKid,omitempty"`
	HomeRegion string    `json:"homeRegion,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	Keys       []keyView `json:"keys,omitempty"`
}

// keyView lists a key without its material.
type keyView struct {
	KID        string       `json:"kid"`
	Use        store.KeyUse `json:"use"`
	CreatedAt  time.Time    `json:"createdAt"`
	ValidUntil *time.Time   `json:"validUntil,omitempty"`
}

// PublicView returns d as a sender sees it.
func PublicView(d store.Destination) Public {
	services := d.Services
	if services == nil {
		services = []store.Service{}
	}
	versions := d.MetadataVersions
	if versions == nil {
		versions = []string{}
	}
	var rc json.RawMessage
	if t := bytes.TrimSpace(d.ReplyChannels); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		rc = t
	}
	return Public{
		DestinationID: d.ID, Status: d.Status, Services: services,
		EncryptionKID: d.EncryptionKID, MetadataVersions: versions, ReplyChannels: rc,
	}
}

// PrivateView returns d as its receivers and managers see it.
func PrivateView(d store.Destination) Private {
	v := Private{Public: PublicView(d), ContactInformation: d.Contact}
	if d.CallbackURL != "" {
		v.Callback = &callbackView{URL: d.CallbackURL}
	}
	return v
}

// AdminView returns d and its keys as the operator sees them.
func AdminView(d store.Destination, keys []store.Key) Admin {
	v := Admin{
		Private:    PrivateView(d),
		SigningKID: d.SigningKID, HomeRegion: d.HomeRegion,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	for _, k := range keys {
		v.Keys = append(v.Keys, keyView{KID: k.KID, Use: k.Use, CreatedAt: k.CreatedAt, ValidUntil: k.ValidUntil})
	}
	return v
}

// PathID reads and checks the destinationId path parameter. An id that
// is no UUID names no destination: 404, the answer the API's operations
// on a destination declare.
func PathID(r *http.Request) (string, error) {
	raw := r.PathValue("destinationId")
	id, ok := httpapi.CanonicalUUID(raw)
	if !ok {
		p := problem.DestinationNotFound(raw)
		p.Detail = fmt.Sprintf("destinationId %q is not a UUID: no destination has it", raw)
		return "", p
	}
	return id, nil
}

// Reader reads destinations.
type Reader interface {
	Destination(ctx context.Context, id string) (store.Destination, error)
}

// Load reads destination id, turning absence into a 404 problem.
func Load(ctx context.Context, st Reader, id string) (store.Destination, error) {
	d, err := st.Destination(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Destination{}, problem.DestinationNotFound(id)
	}
	if err != nil {
		return store.Destination{}, fmt.Errorf("read destination %s: %w", id, err)
	}
	return d, nil
}

// canSee reports whether a sender's region scopes reach one of the
// destination's offers.
func canSee(s scope.Set, d store.Destination) bool {
	for _, svc := range d.Services {
		if s.CanLookUp(svc.Regions, svc.Identifier) {
			return true
		}
	}
	return false
}

// Store is what the destination endpoints read.
type Store interface {
	Reader
	Key(ctx context.Context, destinationID, kid string) (store.Key, error)
	Destinations(ctx context.Context, p store.Page) ([]store.Destination, int, error)
}

// API serves the destination endpoints.
type API struct {
	api      *httpapi.API
	store    Store
	registry *registry.Registry
	now      func() time.Time
}

// New returns the destination endpoints on st; changes go through reg;
// now is the clock (nil: time.Now).
func New(api *httpapi.API, st Store, reg *registry.Registry, now func() time.Time) *API {
	if now == nil {
		now = time.Now
	}
	return &API{api: api, store: st, registry: reg, now: now}
}

// Routes registers FIT-Connect's destination endpoints.
func (a *API) Routes(m *httpapi.Mux) {
	m.Handle("GET /v1/destinations", a.api.Authed(a.handleList))
	m.Handle("POST /v1/destinations", a.api.Authed(a.handleCreate))
	m.Handle("GET /v1/destinations/{destinationId}", a.api.Authed(a.handleGetDestination))
	m.Handle("PUT /v1/destinations/{destinationId}", a.api.Authed(a.handlePut))
	m.Handle("PATCH /v1/destinations/{destinationId}", a.api.Authed(a.handlePatch))
	m.Handle("DELETE /v1/destinations/{destinationId}", a.api.Authed(a.handleDelete))
	m.Handle("POST /v1/destinations/{destinationId}/keys", a.api.Authed(a.handleAddKey))
	m.Handle("GET /v1/destinations/{destinationId}/keys/{keyId}", a.api.Public(a.handleGetKey))
}

// handleGetDestination answers GET /v1/destinations/{destinationId}:
// the private view for the destination's receivers, managers and
// operators, the public view for senders whose region scope reaches it.
func (a *API) handleGetDestination(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if !p.Scopes.OfParty() {
		return httpapi.Forbidden(scope.SendRegion+"<ars>",
			"reading a destination requires a send:region, subscribe:destination or manage:destination scope")
	}
	id, err := PathID(r)
	if err != nil {
		return err
	}
	d, err := Load(r.Context(), a.store, id)
	if err != nil {
		return err
	}
	var view any
	switch {
	case p.Scopes.CanSubscribe(id) || p.Scopes.CanManage(id) || p.Scopes.IsAdmin():
		view = PrivateView(d)
	case canSee(p.Scopes, d):
		view = PublicView(d)
	default:
		return httpapi.Forbidden(scope.Subscribe+id,
			fmt.Sprintf("no scope covers destination %s: want subscribe:destination:%s, manage:destination:%s or a send:region scope reaching one of its regions", id, id, id))
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, view)
	return nil
}

// handleGetKey answers GET /v1/destinations/{destinationId}/keys/{keyId}
// with the public JWK. It needs no token (the spec names no security);
// keys past their validity are gone.
func (a *API) handleGetKey(w http.ResponseWriter, r *http.Request) error {
	id, err := PathID(r)
	if err != nil {
		return err
	}
	kid := r.PathValue("keyId")
	if n := len(kid); n < 8 || n > 64 {
		// 404 as for a malformed destinationId: the operation knows no 400.
		p := problem.KeyNotFound(id, "")
		p.Detail = fmt.Sprintf("a keyId has 8 to 64 characters, this one %d: no key has it", n)
		return p
	}
	k, err := a.store.Key(r.Context(), id, kid)
	if errors.Is(err, store.ErrNotFound) {
		return problem.KeyNotFound(id, kid)
	}
	if err != nil {
		return fmt.Errorf("read key %s of %s: %w", kid, id, err)
	}
	if !k.ValidAt(a.now()) {
		return problem.KeyNotFound(id, kid)
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(k.JWK)
	return nil
}
