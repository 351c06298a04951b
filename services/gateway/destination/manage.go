package destination

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// RevisionHeader carries the registry revision a write produced; a
// process whose registry revision has reached it routes with the change.
const RevisionHeader = "Amtsbote-Registry-Revision"

// SetRevision answers with the registry revision a write produced.
func SetRevision(w http.ResponseWriter, rev uint64) {
	if rev > 0 {
		w.Header().Set(RevisionHeader, strconv.FormatUint(rev, 10))
	}
}

// list is FIT-Connect's DestinationList.
type list struct {
	Count        int       `json:"count"`
	Offset       int       `json:"offset"`
	TotalCount   int       `json:"totalCount"`
	Destinations []Private `json:"destinations"`
}

// handleList answers GET /v1/destinations: the destinations the caller
// may subscribe to or manage, in the order of its scopes; every
// destination for an operator.
func (a *API) handleList(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	page, err := httpapi.PageOf(r)
	if err != nil {
		return err
	}
	out := list{Offset: page.Offset, Destinations: []Private{}}
	if p.Scopes.IsAdmin() {
		all, total, err := a.store.Destinations(r.Context(), page)
		if err != nil {
			return fmt.Errorf("list destinations: %w", err)
		}
		out.TotalCount = total
		for _, d := range all {
			out.Destinations = append(out.Destinations, PrivateView(d))
		}
	} else {
		ids := p.Scopes.Subscribed()
		for _, id := range p.Scopes.Managed() {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return httpapi.Forbidden(scope.Manage+"<id>", "listing destinations requires a subscribe:destination or manage:destination scope")
		}
		var own []store.Destination
		for _, id := range ids {
			d, err := a.store.Destination(r.Context(), id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read destination %s: %w", id, err)
			}
			own = append(own, d)
		}
		out.TotalCount = len(own)
		for _, d := range own[min(page.Offset, len(own)):min(page.Offset+page.Limit, len(own))] {
			out.Destinations = append(out.Destinations, PrivateView(d))
		}
	}
	out.Count = len(out.Destinations)
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handleCreate answers POST /v1/destinations (scope create:destination):
// FIT-Connect's CreateDestination, plus Amtsbote's optional homeRegion
// (and, for an operator, destinationId). A new destination is created; it
// claims its regions when it is first activated. Members the format does not define are
// ignored, as FIT-Connect's schemas allow them (its own example sends
// replyChannel); the operator API refuses them.
func (a *API) handleCreate(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	if !p.Scopes.CanCreate() && !p.Scopes.IsAdmin() {
		return httpapi.Forbidden(scope.CreateDestination, "creating a destination requires scope "+scope.CreateDestination)
	}
	var in registry.DestinationInput
	if err := a.api.DecodeRequest(w, r, &in, false); err != nil {
		return err
	}
	if in.Status != nil {
		return problem.UnknownField("status")
	}
	if in.DestinationID != "" && !p.Scopes.IsAdmin() {
		// A chosen id could be one portals already send to, of an
		// authority not yet registered here.
		np := problem.UnknownField("destinationId")
		np.Detail = "destinationId is generated here; only an operator (" + scope.Admin + ") names one, through /admin/v1/destinations"
		return np
	}
	d, keys, err := in.Destination()
	if err != nil {
		return err
	}
	if in.HomeRegion != nil && !p.Scopes.IsAdmin() {
		// Only the operator files a destination outside its regions.
		if err := registry.WithinHome(d); err != nil {
			return err
		}
	}
	c, err := a.registry.CreateDestination(r.Context(), p.Subject, d, keys)
	if err != nil {
		return err
	}
	SetRevision(w, c.Revision)
	w.Header().Set("Location", "/v1/destinations/"+c.Destination.ID)
	return a.writePrivate(w, c.Destination, http.StatusCreated)
}

// writePrivate answers with the private view of d.
func (a *API) writePrivate(w http.ResponseWriter, d store.Destination, status int) error {
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.WriteJSON(w, status, PrivateView(d))
	return nil
}

// managed reads the destinationId path parameter and checks that the
// caller may manage it.
func managed(r *http.Request, p httpapi.Principal) (string, error) {
	id, err := PathID(r)
	if err != nil {
		return "", err
	}
	if !p.Scopes.CanManage(id) && !p.Scopes.IsAdmin() {
		return "", httpapi.Forbidden(scope.Manage+id, fmt.Sprintf("managing destination %s requires scope %s%s", id, scope.Manage, id))
	}
	return id, nil
}

// handlePut answers PUT /v1/destinations/{destinationId}: FIT-Connect's
// UpdateDestination replaces the destination's fields. Members it does not
// define, such as a destination read back with its destinationId and
// keys, are ignored.
func (a *API) handlePut(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	return a.update(w, r, p, registry.UpdateInput.Replace)
}

// handlePatch answers PATCH /v1/destinations/{destinationId}:
// FIT-Connect's PatchDestination changes the members given, such as
// {"status": "active"}, which activates a destination. A body naming none
// of its members is refused, so that a misspelt one does not pass as a
// change.
func (a *API) handlePatch(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	return a.update(w, r, p, registry.UpdateInput.Patch)
}

func (a *API) update(w http.ResponseWriter, r *http.Request, p httpapi.Principal, as func(registry.UpdateInput) (func(*store.Destination) (bool, error), error)) error {
	id, err := managed(r, p)
	if err != nil {
		return err
	}
	var in registry.UpdateInput
	if err := a.api.DecodeRequest(w, r, &in, false); err != nil {
		return err
	}
	if in.HomeRegion != nil && !p.Scopes.IsAdmin() {
		return problem.UnknownField("homeRegion")
	}
	change, err := as(in)
	if err != nil {
		return err
	}
	var opts []registry.UpdateOption
	if !p.Scopes.IsAdmin() {
		// A manager's change: the operator widens a destination's area.
		opts = append(opts, registry.WithinArea())
	}
	c, err := a.registry.UpdateDestination(r.Context(), p.Subject, id, change, opts...)
	if err != nil {
		return err
	}
	SetRevision(w, c.Revision)
	return a.writePrivate(w, c.Destination, http.StatusOK)
}

// handleDelete answers DELETE /v1/destinations/{destinationId}: the
// destination is decommissioned, which ends its routes and its pickup; its
// record, keys and audit trail stay as evidence.
func (a *API) handleDelete(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	id, err := managed(r, p)
	if err != nil {
		return err
	}
	c, err := a.registry.SetStatus(r.Context(), p.Subject, id, store.StatusDecommissioned)
	if err != nil {
		return err
	}
	SetRevision(w, c.Revision)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleAddKey answers POST /v1/destinations/{destinationId}/keys with
// 201 and the key's Location, also when the same key was added before.
// The key does not replace the destination's current keys; PATCH
// encryptionKid makes a new encryption key current.
func (a *API) handleAddKey(w http.ResponseWriter, r *http.Request, p httpapi.Principal) error {
	id, err := managed(r, p)
	if err != nil {
		return err
	}
	var members map[string]json.RawMessage
	if err := a.api.DecodeRequest(w, r, &members, false); err != nil {
		return err
	}
	purpose, err := registry.KeyPurpose(members)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(members)
	if err != nil {
		return fmt.Errorf("encode jwk: %w", err)
	}
	k, err := a.registry.AddKey(r.Context(), p.Subject, id, raw, purpose, false)
	if p2, ok := problem.As(err); ok && p2.Status == http.StatusConflict && p2.Field == "kid" {
		var kid string
		_ = json.Unmarshal(members["kid"], &kid)
		if same, serr := a.sameKey(r, id, kid, members); serr != nil {
			return serr
		} else if !same {
			return err
		}
		k = store.Key{KID: kid}
	} else if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/destinations/"+id+"/keys/"+k.KID)
	w.WriteHeader(http.StatusCreated)
	return nil
}

// sameKey reports whether destination id already holds the key kid with
// the modulus and exponent of members.
func (a *API) sameKey(r *http.Request, id, kid string, members map[string]json.RawMessage) (bool, error) {
	k, err := a.store.Key(r.Context(), id, kid)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read key %s of %s: %w", kid, id, err)
	}
	var stored map[string]json.RawMessage
	if err := json.Unmarshal(k.JWK, &stored); err != nil {
		return false, fmt.Errorf("decode key %s of %s: %w", kid, id, err)
	}
	for _, m := range []string{"n", "e", "key_ops"} {
		if !bytes.Equal(compact(stored[m]), compact(members[m])) {
			return false, nil
		}
	}
	return true, nil
}

func compact(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}
