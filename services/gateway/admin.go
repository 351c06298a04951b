package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// The operator API under /admin/v1/ is Amtsbote's own. Its request bodies
// are decoded strictly: a member the format does not define is refused, so
// a misspelt field never passes silently.

const adminPrefix = "/admin/v1"

// destinationList is FIT-Connect's DestinationList shape with admin views.
type destinationList struct {
	Count        int                `json:"count"`
	Offset       int                `json:"offset"`
	TotalCount   int                `json:"totalCount"`
	Destinations []adminDestination `json:"destinations"`
}

// handleAdminCreateDestination creates a destination with its two keys.
func (g *Gateway) handleAdminCreateDestination(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in destinationInput
	if err := g.decodeJSONRequest(w, r, &in, true); err != nil {
		return err
	}
	d, keys, err := in.destination()
	if err != nil {
		return err
	}
	now := g.now()
	for i := range keys {
		keys[i].CreatedAt = now
	}
	if in.DestinationID != "" {
		if _, err := g.store.Destination(r.Context(), d.ID); err == nil {
			return problem.Conflict("destinationId", fmt.Sprintf("destination %s exists", d.ID))
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("read destination %s: %w", d.ID, err)
		}
	}
	if err := g.prepareRoutes(r.Context()); err != nil {
		return err
	}
	if err := g.checkRoutes(r.Context(), d); err != nil {
		return err
	}
	if err := g.store.CreateDestination(r.Context(), p.Subject, d, keys); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem.Conflict("destinationId", fmt.Sprintf("destination %s or one of its key ids (%s, %s) exists", d.ID, keys[0].KID, keys[1].KID))
		}
		return fmt.Errorf("create destination: %w", err)
	}
	g.publishDestination(w, r, d.ID)
	return g.writeAdminDestination(w, r, d.ID, http.StatusCreated)
}

// writeAdminDestination answers with the stored state of destination id.
func (g *Gateway) writeAdminDestination(w http.ResponseWriter, r *http.Request, id string, status int) error {
	d, err := g.loadDestination(r, id)
	if err != nil {
		return err
	}
	keys, err := g.store.Keys(r.Context(), id)
	if err != nil {
		return fmt.Errorf("list keys of %s: %w", id, err)
	}
	w.Header().Set("Cache-Control", "no-cache")
	if status == http.StatusCreated && w.Header().Get("Location") == "" {
		w.Header().Set("Location", adminPrefix+"/destinations/"+id)
	}
	writeJSON(w, status, adminView(d, keys))
	return nil
}

// pageOf reads limit (1..500, default 100) and offset (≥ 0) from the query.
func pageOf(r *http.Request) (store.Page, error) {
	var p store.Page
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxPageLimit {
			return p, problem.InvalidRequest("limit", fmt.Sprintf("limit %q must be an integer from 1 to %d", s, store.MaxPageLimit))
		}
		p.Limit = n
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, problem.InvalidRequest("offset", fmt.Sprintf("offset %q must be a non-negative integer", s))
		}
		p.Offset = n
	}
	return p.Normalize(), nil
}

func (g *Gateway) handleAdminListDestinations(w http.ResponseWriter, r *http.Request, _ Principal) error {
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	list, total, err := g.store.Destinations(r.Context(), page)
	if err != nil {
		return fmt.Errorf("list destinations: %w", err)
	}
	out := destinationList{Count: len(list), Offset: page.Offset, TotalCount: total, Destinations: make([]adminDestination, 0, len(list))}
	for _, d := range list {
		out.Destinations = append(out.Destinations, adminView(d, nil))
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (g *Gateway) handleAdminGetDestination(w http.ResponseWriter, r *http.Request, _ Principal) error {
	id, err := pathDestinationID(r)
	if err != nil {
		return err
	}
	return g.writeAdminDestination(w, r, id, http.StatusOK)
}

// updateInput is FIT-Connect's UpdateDestination and PatchDestination plus
// homeRegion: PUT requires what UpdateDestination requires, PATCH changes
// only the members present.
type updateInput struct {
	Status             *store.DestinationStatus  `json:"status"`
	ContactInformation *store.ContactInformation `json:"contactInformation"`
	Services           []store.Service           `json:"services"`
	Callback           *callbackInput            `json:"callback"`
	EncryptionKID      *string                   `json:"encryptionKid"`
	ReplyChannels      json.RawMessage           `json:"replyChannels"`
	MetadataVersions   []string                  `json:"metadataVersions"`
	HomeRegion         *string                   `json:"homeRegion"`
}

// handleAdminPutDestination replaces a destination's fields (not its id,
// keys or, when absent, its homeRegion). An absent callback removes it.
func (g *Gateway) handleAdminPutDestination(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := pathDestinationID(r)
	if err != nil {
		return err
	}
	var in updateInput
	if err := g.decodeJSONRequest(w, r, &in, true); err != nil {
		return err
	}
	for _, f := range []struct {
		name    string
		present bool
	}{
		{"status", in.Status != nil}, {"contactInformation", in.ContactInformation != nil},
		{"services", in.Services != nil}, {"encryptionKid", in.EncryptionKID != nil},
		{"metadataVersions", in.MetadataVersions != nil},
	} {
		if !f.present {
			return problem.Invalid(f.name, f.name+" is required")
		}
	}
	return g.updateDestination(w, r, p, id, func(d *store.Destination) (bool, error) {
		if err := checkTransition(d.Status, *in.Status); err != nil {
			return false, err
		}
		d.Status = *in.Status
		d.Contact = *in.ContactInformation
		d.Services = in.Services
		d.EncryptionKID = *in.EncryptionKID
		d.MetadataVersions = in.MetadataVersions
		d.ReplyChannels = in.ReplyChannels
		d.CallbackURL, d.CallbackSecret = "", ""
		if in.Callback != nil {
			d.CallbackURL, d.CallbackSecret = in.Callback.URL, in.Callback.Secret
		}
		if in.HomeRegion != nil {
			d.HomeRegion = *in.HomeRegion
		}
		return in.Callback != nil, nil
	})
}

func (g *Gateway) handleAdminPatchDestination(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := pathDestinationID(r)
	if err != nil {
		return err
	}
	var in updateInput
	if err := g.decodeJSONRequest(w, r, &in, true); err != nil {
		return err
	}
	if in.Status != nil && *in.Status == store.StatusCreated {
		return problem.Invalid("status", "status may be patched to active, inactive or decommissioned")
	}
	return g.updateDestination(w, r, p, id, func(d *store.Destination) (bool, error) {
		if in.Status != nil {
			if err := checkTransition(d.Status, *in.Status); err != nil {
				return false, err
			}
			d.Status = *in.Status
		}
		if in.ContactInformation != nil {
			d.Contact = *in.ContactInformation
		}
		if in.Services != nil {
			d.Services = in.Services
		}
		if in.EncryptionKID != nil {
			d.EncryptionKID = *in.EncryptionKID
		}
		if in.ReplyChannels != nil {
			d.ReplyChannels = in.ReplyChannels
		}
		if in.MetadataVersions != nil {
			d.MetadataVersions = in.MetadataVersions
		}
		if in.Callback != nil {
			d.CallbackURL, d.CallbackSecret = in.Callback.URL, in.Callback.Secret
		}
		if in.HomeRegion != nil {
			d.HomeRegion = *in.HomeRegion
		}
		return in.Callback != nil, nil
	})
}

// handleAdminSetStatus activates or deactivates a destination.
func (g *Gateway) handleAdminSetStatus(status store.DestinationStatus) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, p Principal) error {
		id, err := pathDestinationID(r)
		if err != nil {
			return err
		}
		return g.updateDestination(w, r, p, id, func(d *store.Destination) (bool, error) {
			if err := checkTransition(d.Status, status); err != nil {
				return false, err
			}
			d.Status = status
			return false, nil
		})
	}
}

// checkTransition refuses leaving decommissioned and returning to created.
func checkTransition(from, to store.DestinationStatus) error {
	switch {
	case from == to:
		return nil
	case from == store.StatusDecommissioned:
		return problem.Conflict("status", "a decommissioned destination cannot change its status")
	case to == store.StatusCreated:
		return problem.Conflict("status", fmt.Sprintf("a destination that is %s cannot return to created", from))
	}
	return nil
}

// updateDestination applies change inside the store's read-modify-write,
// validates the result and checks that encryptionKid names a valid
// encryption key of the destination. change reports whether a callback
// was given, so its secret is validated.
func (g *Gateway) updateDestination(w http.ResponseWriter, r *http.Request, p Principal, id string,
	change func(*store.Destination) (bool, error)) error {
	if _, err := g.loadDestination(r, id); err != nil {
		return err
	}
	keys, err := g.store.Keys(r.Context(), id)
	if err != nil {
		return fmt.Errorf("list keys of %s: %w", id, err)
	}
	if err := g.prepareRoutes(r.Context()); err != nil {
		return err
	}
	now := g.now()
	_, err = g.store.UpdateDestination(r.Context(), p.Subject, id, func(d *store.Destination) error {
		withCallback, err := change(d)
		if err != nil {
			return err
		}
		if err := validateDestination(d, withCallback); err != nil {
			return err
		}
		if err := g.checkRoutes(r.Context(), *d); err != nil {
			return err
		}
		for _, k := range keys {
			if k.KID == d.EncryptionKID {
				if k.Use != store.UseEncryption {
					return problem.Invalid("encryptionKid", fmt.Sprintf("key %s is a %s key", k.KID, k.Use))
				}
				if !k.ValidAt(now) {
					return problem.Invalid("encryptionKid", fmt.Sprintf("key %s is no longer valid", k.KID))
				}
				return nil
			}
		}
		return problem.Invalid("encryptionKid", fmt.Sprintf("destination %s has no key %q; add it first", id, d.EncryptionKID))
	})
	if errors.Is(err, store.ErrNotFound) {
		return problem.DestinationNotFound(id)
	}
	if err != nil {
		return err
	}
	g.publishDestination(w, r, id)
	return g.writeAdminDestination(w, r, id, http.StatusOK)
}

// handleAdminAddKey adds a public JWK to a destination. With "roll": true
// next to the JWK's members, the key becomes the current key of its use
// and the previous one stays valid for the grace period.
func (g *Gateway) handleAdminAddKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := pathDestinationID(r)
	if err != nil {
		return err
	}
	var members map[string]json.RawMessage
	if err := g.decodeJSONRequest(w, r, &members, false); err != nil {
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
	purpose, err := purposeOf(members)
	if err != nil {
		return err
	}
	d, err := g.loadDestination(r, id)
	if err != nil {
		return err
	}
	if d.Status == store.StatusDecommissioned {
		return problem.Conflict("destinationId", fmt.Sprintf("destination %s is decommissioned", id))
	}
	k, jwk, err := decodeKey("", raw, purpose)
	if err != nil {
		return err
	}
	now := g.now()
	key := store.Key{DestinationID: id, KID: k.KeyID, Use: store.KeyUse(purpose), JWK: jwk, CreatedAt: now}
	if roll {
		_, err = g.store.RollKey(r.Context(), p.Subject, key, now.Add(g.keyGrace))
	} else {
		err = g.store.AddKey(r.Context(), p.Subject, key)
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return problem.Conflict("kid", fmt.Sprintf("a key with kid %q exists", k.KeyID))
	case errors.Is(err, store.ErrNotFound):
		return problem.DestinationNotFound(id)
	case err != nil:
		return fmt.Errorf("add key %s to %s: %w", k.KeyID, id, err)
	}
	w.Header().Set("Location", "/v1/destinations/"+id+"/keys/"+k.KeyID)
	return g.writeAdminDestination(w, r, id, http.StatusCreated)
}

// purposeOf tells an encryption key from a signing key by key_ops.
func purposeOf(members map[string]json.RawMessage) (jose.Purpose, error) {
	var ops []string
	if err := json.Unmarshal(members["key_ops"], &ops); err != nil || len(ops) != 1 {
		return "", problem.InvalidKey("key_ops", `key_ops must be ["wrapKey"] for an encryption key or ["verify"] for a signing key`)
	}
	switch ops[0] {
	case "wrapKey":
		return jose.Encryption, nil
	case "verify":
		return jose.Signing, nil
	}
	return "", problem.InvalidKey("key_ops", fmt.Sprintf(`key_ops %q: want "wrapKey" (encryption) or "verify" (signing)`, ops[0]))
}

// clientInput creates an OAuth client.
type clientInput struct {
	ClientID string   `json:"clientId"`
	Name     string   `json:"name"`
	Scopes   []string `json:"scopes"`
	Disabled bool     `json:"disabled"`
}

// clientCreated shows the secret, once.
type clientCreated struct {
	store.Client
	ClientSecret string `json:"clientSecret"`
}

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

func (g *Gateway) handleAdminCreateClient(w http.ResponseWriter, r *http.Request, p Principal) error {
	var in clientInput
	if err := g.decodeJSONRequest(w, r, &in, true); err != nil {
		return err
	}
	if strings.TrimSpace(in.Name) == "" || utf8.RuneCountInString(in.Name) > 200 {
		return problem.Invalid("name", "name must have 1 to 200 characters")
	}
	if len(in.Scopes) == 0 {
		return problem.Invalid("scopes", "scopes must list at least one scope")
	}
	for i, s := range in.Scopes {
		if err := ValidateScope(s); err != nil {
			return problem.Invalid(fmt.Sprintf("scopes[%d]", i), err.Error())
		}
	}
	if in.ClientID == "" {
		in.ClientID = uuid.NewString()
	} else if !clientIDPattern.MatchString(in.ClientID) {
		return problem.Invalid("clientId", "clientId must have 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")
	}
	secret := NewSecret()
	hash, err := HashSecret(secret)
	if err != nil {
		return err
	}
	c := store.Client{ID: in.ClientID, Name: in.Name, SecretHash: hash, Scopes: in.Scopes, Disabled: in.Disabled, CreatedAt: g.now()}
	if err := g.store.CreateClient(r.Context(), p.Subject, c); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem.Conflict("clientId", fmt.Sprintf("client %s exists", c.ID))
		}
		return fmt.Errorf("create client: %w", err)
	}
	stored, err := g.store.Client(r.Context(), c.ID)
	if err != nil {
		return fmt.Errorf("read client %s: %w", c.ID, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", adminPrefix+"/clients/"+c.ID)
	writeJSON(w, http.StatusCreated, clientCreated{Client: stored, ClientSecret: secret})
	return nil
}

func (g *Gateway) handleAdminListClients(w http.ResponseWriter, r *http.Request, _ Principal) error {
	list, err := g.store.Clients(r.Context())
	if err != nil {
		return fmt.Errorf("list clients: %w", err)
	}
	if list == nil {
		list = []store.Client{}
	}
	writeJSON(w, http.StatusOK, struct {
		Clients []store.Client `json:"clients"`
	}{list})
	return nil
}

func (g *Gateway) handleAdminGetClient(w http.ResponseWriter, r *http.Request, _ Principal) error {
	id := r.PathValue("clientId")
	c, err := g.store.Client(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("clientId", fmt.Sprintf("client %s does not exist", id))
	}
	if err != nil {
		return fmt.Errorf("read client %s: %w", id, err)
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (g *Gateway) handleAdminAudit(w http.ResponseWriter, r *http.Request, _ Principal) error {
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	entries, err := g.store.AuditLog(r.Context(), r.URL.Query().Get("object"), page)
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, struct {
		Count   int                `json:"count"`
		Offset  int                `json:"offset"`
		Entries []store.AuditEntry `json:"entries"`
	}{len(entries), page.Offset, entries})
	return nil
}
