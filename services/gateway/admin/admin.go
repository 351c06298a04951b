// Package admin serves Amtsbote's operator API under /admin/v1/:
// destinations, their keys and status, OAuth clients, the audit log,
// reference data imports and coverage, dead letters and overdue
// submissions. Every change goes through the
// registry operations (pkg/registry), as the operator commands do. Request
// bodies are decoded strictly: a member the format does not define is
// refused, so a misspelt field never passes silently.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/destination"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// Prefix is where the operator API lives.
const Prefix = "/admin/v1"

// RevisionHeader carries the registry revision a write produced; a
// process whose registry revision (routesync) has reached it routes with
// the change.
const RevisionHeader = destination.RevisionHeader

// DefaultMaxImport bounds a reference data file; the whole GV100AD is
// about 3.5 MB.
const DefaultMaxImport int64 = 64 << 20

// Store is what the operator API reads.
type Store interface {
	destination.Reader
	Destinations(ctx context.Context, p store.Page) ([]store.Destination, int, error)
	Keys(ctx context.Context, destinationID string) ([]store.Key, error)
	Client(ctx context.Context, id string) (store.Client, error)
	Clients(ctx context.Context) ([]store.Client, error)
	AuditLog(ctx context.Context, object string, p store.Page) ([]store.AuditEntry, error)
	AuditCount(ctx context.Context, object string) (int, error)
	Audit(ctx context.Context, e store.AuditEntry) error
	Overdue(ctx context.Context, cutoffs []time.Time) ([]store.OverdueDestination, error)
	store.SubmissionReader
}

// Config is what an API needs. API, Store and Registry are required.
type Config struct {
	API      *httpapi.API
	Store    Store
	Registry *registry.Registry
	// Routes is the routing registry coverage is computed from; nil
	// answers coverage with 503.
	Routes *routesync.Syncer
	// MaxImport bounds an imported file in bytes (default DefaultMaxImport).
	MaxImport int64
	// Dead is DEAD's dead letters; nil answers their endpoints with 503.
	Dead DeadLetters
	// Overdue are the ages after which a submission not picked up is
	// listed as overdue, increasing (default DefaultOverdue).
	Overdue []time.Duration
	Now     func() time.Time
}

// API serves the operator API. It is safe for concurrent use.
type API struct {
	api       *httpapi.API
	store     Store
	registry  *registry.Registry
	routes    *routesync.Syncer
	maxImport int64
	dead      DeadLetters
	overdue   []time.Duration
	now       func() time.Time
}

// New checks cfg.
func New(cfg Config) (*API, error) {
	if cfg.API == nil || cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("new admin api: no API, store or registry")
	}
	a := &API{api: cfg.API, store: cfg.Store, registry: cfg.Registry, routes: cfg.Routes, maxImport: cfg.MaxImport,
		dead: cfg.Dead, overdue: cfg.Overdue, now: cfg.Now}
	if len(a.overdue) == 0 {
		a.overdue = DefaultOverdue
	}
	for i, d := range a.overdue {
		if d <= 0 || (i > 0 && d <= a.overdue[i-1]) {
			return nil, fmt.Errorf("new admin api: overdue ages %v: want positive and increasing", a.overdue)
		}
	}
	if a.maxImport == 0 {
		a.maxImport = DefaultMaxImport
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

// Routes registers the operator API.
func (a *API) Routes(m *httpapi.Mux) {
	admin := a.api.Admin
	m.Handle("POST "+Prefix+"/destinations", admin(a.handleCreateDestination))
	m.Handle("GET "+Prefix+"/destinations", admin(a.handleListDestinations))
	m.Handle("GET "+Prefix+"/destinations/{destinationId}", admin(a.handleGetDestination))
	m.Handle("PUT "+Prefix+"/destinations/{destinationId}", admin(a.handlePutDestination))
	m.Handle("PATCH "+Prefix+"/destinations/{destinationId}", admin(a.handlePatchDestination))
	m.Handle("POST "+Prefix+"/destinations/{destinationId}/activate", admin(a.handleSetStatus(store.StatusActive)))
	m.Handle("POST "+Prefix+"/destinations/{destinationId}/deactivate", admin(a.handleSetStatus(store.StatusInactive)))
	m.Handle("POST "+Prefix+"/destinations/{destinationId}/keys", admin(a.handleAddKey))
	m.Handle("POST "+Prefix+"/clients", admin(a.handleCreateClient))
	m.Handle("GET "+Prefix+"/clients", admin(a.handleListClients))
	m.Handle("GET "+Prefix+"/clients/{clientId}", admin(a.handleGetClient))
	m.Handle("PATCH "+Prefix+"/clients/{clientId}", admin(a.handlePatchClient))
	m.Handle("POST "+Prefix+"/clients/{clientId}/secret", admin(a.handleRotateSecret))
	m.Handle("GET "+Prefix+"/audit", admin(a.handleAudit))
	m.HandleStream("POST "+Prefix+"/import/gv100ad", admin(a.handleImportGV100AD))
	m.HandleStream("POST "+Prefix+"/import/leika", admin(a.handleImportLeika))
	m.HandleStream("POST "+Prefix+"/import/plz", admin(a.handleImportPLZ))
	m.Handle("GET "+Prefix+"/coverage", admin(a.handleCoverage))
	m.Handle("GET "+Prefix+"/dead-letters", admin(a.handleListDeadLetters))
	m.Handle("POST "+Prefix+"/dead-letters/redrive", admin(a.handleRedriveDeadLetters))
	m.Handle("GET "+Prefix+"/dead-letters/{seq}", admin(a.handleGetDeadLetter))
	m.Handle("POST "+Prefix+"/dead-letters/{seq}/redrive", admin(a.handleRedriveDeadLetter))
	m.Handle("DELETE "+Prefix+"/dead-letters/{seq}", admin(a.handlePurgeDeadLetter))
	m.Handle("GET "+Prefix+"/overdue", admin(a.handleOverdue))
}

// destinationList is FIT-Connect's DestinationList shape with admin views.
type destinationList struct {
	Count        int                 `json:"count"`
	Offset       int                 `json:"offset"`
	TotalCount   int                 `json:"totalCount"`
	Destinations []destination.Admin `json:"destinations"`
}

// handleCreateDestination creates a destination with its two keys.
func (a *API) handleCreateDestination(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	var in registry.DestinationInput
	if err := a.api.DecodeRequest(w, r, &in, true); err != nil {
		return err
	}
	d, keys, err := in.Destination()
	if err != nil {
		return err
	}
	c, err := a.registry.CreateDestination(r.Context(), p.Subject, d, keys)
	if err != nil {
		return err
	}
	setRevision(w, c.Revision)
	return a.writeDestination(w, r, d.ID, http.StatusCreated)
}

// setRevision answers with the registry revision a write produced.
func setRevision(w http.ResponseWriter, rev uint64) {
	if rev > 0 {
		w.Header().Set(RevisionHeader, strconv.FormatUint(rev, 10))
	}
}

// writeDestination answers with the stored state of destination id.
func (a *API) writeDestination(w http.ResponseWriter, r *http.Request, id string, status int) error {
	d, err := destination.Load(r.Context(), a.store, id)
	if err != nil {
		return err
	}
	keys, err := a.store.Keys(r.Context(), id)
	if err != nil {
		return fmt.Errorf("list keys of %s: %w", id, err)
	}
	w.Header().Set("Cache-Control", "no-cache")
	if status == http.StatusCreated && w.Header().Get("Location") == "" {
		w.Header().Set("Location", Prefix+"/destinations/"+id)
	}
	httpapi.WriteJSON(w, status, destination.AdminView(d, keys))
	return nil
}

func (a *API) handleListDestinations(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	list, total, err := a.store.Destinations(r.Context(), page)
	if err != nil {
		return fmt.Errorf("list destinations: %w", err)
	}
	out := destinationList{Count: len(list), Offset: page.Offset, TotalCount: total, Destinations: make([]destination.Admin, 0, len(list))}
	for _, d := range list {
		out.Destinations = append(out.Destinations, destination.AdminView(d, nil))
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) handleGetDestination(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	id, err := destination.PathID(r)
	if err != nil {
		return err
	}
	return a.writeDestination(w, r, id, http.StatusOK)
}

// handlePutDestination replaces a destination's fields (not its id,
// keys or, when absent, its homeRegion). An absent callback removes it.
func (a *API) handlePutDestination(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	id, err := destination.PathID(r)
	if err != nil {
		return err
	}
	var in registry.UpdateInput
	if err := a.api.DecodeRequest(w, r, &in, true); err != nil {
		return err
	}
	change, err := in.Replace()
	if err != nil {
		return err
	}
	return a.update(w, r, p, id, change)
}

func (a *API) handlePatchDestination(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	id, err := destination.PathID(r)
	if err != nil {
		return err
	}
	var in registry.UpdateInput
	if err := a.api.DecodeRequest(w, r, &in, true); err != nil {
		return err
	}
	change, err := in.Patch()
	if err != nil {
		return err
	}
	return a.update(w, r, p, id, change)
}

// handleSetStatus activates or deactivates a destination.
func (a *API) handleSetStatus(status store.DestinationStatus) httpapi.Handler {
	return func(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
		id, err := destination.PathID(r)
		if err != nil {
			return err
		}
		return a.update(w, r, p, id, func(d *store.Destination) (bool, error) {
			d.Status = status
			return false, nil
		})
	}
}

// update changes destination id through the registry and answers with
// its new state.
func (a *API) update(w http.ResponseWriter, r *http.Request, p httpapi.Principal, id string, change func(*store.Destination) (bool, error)) error {
	c, err := a.registry.UpdateDestination(r.Context(), p.Subject, id, change)
	if err != nil {
		return err
	}
	setRevision(w, c.Revision)
	return a.writeDestination(w, r, id, http.StatusOK)
}

// handleAddKey adds a public JWK to a destination. With "roll": true next
// to the JWK's members, the key becomes the current key of its use and the
// previous one stays valid for the grace period.
func (a *API) handleAddKey(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	id, err := destination.PathID(r)
	if err != nil {
		return err
	}
	var members map[string]json.RawMessage
	if err := a.api.DecodeRequest(w, r, &members, false); err != nil {
		return err
	}
	roll := false
	if v, ok := members["roll"]; ok {
		if err := json.Unmarshal(v, &roll); err != nil {
			return problem.Invalid("roll", "roll must be a boolean")
		}
		delete(members, "roll")
	}
	raw, err := json.Marshal(members)
	if err != nil {
		return fmt.Errorf("encode jwk: %w", err)
	}
	purpose, err := registry.KeyPurpose(members)
	if err != nil {
		return err
	}
	k, err := a.registry.AddKey(r.Context(), p.Subject, id, raw, purpose, roll)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/destinations/"+id+"/keys/"+k.KID)
	return a.writeDestination(w, r, id, http.StatusCreated)
}

// clientCreated shows the secret, once.
type clientCreated struct {
	store.Client
	ClientSecret string `json:"clientSecret"`
}

func (a *API) handleCreateClient(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	var in registry.ClientInput
	if err := a.api.DecodeRequest(w, r, &in, true); err != nil {
		return err
	}
	c, secret, err := a.registry.CreateClient(r.Context(), p.Subject, in)
	if err != nil {
		return err
	}
	stored, err := a.store.Client(r.Context(), c.ID)
	if err != nil {
		return fmt.Errorf("read client %s: %w", c.ID, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", Prefix+"/clients/"+c.ID)
	httpapi.WriteJSON(w, http.StatusCreated, clientCreated{Client: stored, ClientSecret: secret})
	return nil
}

// handleListClients pages the clients as the other lists do; an
// installation has hundreds of clients, not millions, so the page is cut
// from the whole list.
func (a *API) handleListClients(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	page = page.Normalize()
	list, err := a.store.Clients(r.Context())
	if err != nil {
		return fmt.Errorf("list clients: %w", err)
	}
	total := len(list)
	list = list[min(page.Offset, total):min(page.Offset+page.Limit, total)]
	if list == nil {
		list = []store.Client{}
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Count      int            `json:"count"`
		Offset     int            `json:"offset"`
		TotalCount int            `json:"totalCount"`
		Clients    []store.Client `json:"clients"`
	}{len(list), page.Offset, total, list})
	return nil
}

func (a *API) handleGetClient(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	id := r.PathValue("clientId")
	c, err := a.store.Client(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("clientId", fmt.Sprintf("client %s does not exist", id))
	}
	if err != nil {
		return fmt.Errorf("read client %s: %w", id, err)
	}
	httpapi.WriteJSON(w, http.StatusOK, c)
	return nil
}

// clientPatch is what PATCH may change of a client.
type clientPatch struct {
	Disabled *bool `json:"disabled"`
}

// handlePatchClient disables a client, or enables it again: its secret is
// refused from then on; tokens issued before stay valid until they expire.
func (a *API) handlePatchClient(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	var in clientPatch
	if err := a.api.DecodeRequest(w, r, &in, true); err != nil {
		return err
	}
	if in.Disabled == nil {
		return problem.Invalid("disabled", "disabled is required: true disables the client, false enables it")
	}
	c, err := a.registry.SetClientDisabled(r.Context(), p.Subject, r.PathValue("clientId"), *in.Disabled)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, c)
	return nil
}

// handleRotateSecret gives a client a new secret, shown once; the old one
// is refused from then on.
func (a *API) handleRotateSecret(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	c, secret, err := a.registry.RotateClientSecret(r.Context(), p.Subject, r.PathValue("clientId"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, clientCreated{Client: c, ClientSecret: secret})
	return nil
}

func (a *API) handleAudit(w http.ResponseWriter, r *http.Request, _ httpapi.Principal) error {
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	q, err := httpapi.Query(r)
	if err != nil {
		return err
	}
	entries, err := a.store.AuditLog(r.Context(), q.Get("object"), page)
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	total, err := a.store.AuditCount(r.Context(), q.Get("object"))
	if err != nil {
		return fmt.Errorf("count audit log: %w", err)
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Count      int                `json:"count"`
		Offset     int                `json:"offset"`
		TotalCount int                `json:"totalCount"`
		Entries    []store.AuditEntry `json:"entries"`
	}{len(entries), page.Offset, total, entries})
	return nil
}
