package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// publicDestination is FIT-Connect's PublicDestination: what a sender may see.
type publicDestination struct {
	DestinationID    string                  `json:"destinationId"`
	Status           store.DestinationStatus `json:"status"`
	Services         []store.Service         `json:"services"`
	EncryptionKID    string                  `json:"encryptionKid"`
	MetadataVersions []string                `json:"metadataVersions"`
	ReplyChannels    json.RawMessage         `json:"replyChannels,omitempty"`
}

// privateDestination is FIT-Connect's PrivateDestination: what the
// destination's own receivers and managers see. The callback secret is
// write-only and never shown.
type privateDestination struct {
	publicDestination
	ContactInformation store.ContactInformation `json:"contactInformation"`
	Callback           *callbackView            `json:"callback,omitempty"`
}

type callbackView struct {
	URL string `json:"url"`
}

// adminDestination is the operator's view: everything but the callback secret.
type adminDestination struct {
	privateDestination
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

func publicView(d store.Destination) publicDestination {
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
	return publicDestination{
		DestinationID: d.ID, Status: d.Status, Services: services,
		EncryptionKID: d.EncryptionKID, MetadataVersions: versions, ReplyChannels: rc,
	}
}

func privateView(d store.Destination) privateDestination {
	v := privateDestination{publicDestination: publicView(d), ContactInformation: d.Contact}
	if d.CallbackURL != "" {
		v.Callback = &callbackView{URL: d.CallbackURL}
	}
	return v
}

func adminView(d store.Destination, keys []store.Key) adminDestination {
	v := adminDestination{
		privateDestination: privateView(d),
		SigningKID:         d.SigningKID, HomeRegion: d.HomeRegion,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	for _, k := range keys {
		v.Keys = append(v.Keys, keyView{KID: k.KID, Use: k.Use, CreatedAt: k.CreatedAt, ValidUntil: k.ValidUntil})
	}
	return v
}

// pathDestinationID reads and checks the destinationId path parameter.
func pathDestinationID(r *http.Request) (string, error) {
	raw := r.PathValue("destinationId")
	id, ok := canonicalUUID(raw)
	if !ok {
		return "", problem.Invalid("destinationId", fmt.Sprintf("destinationId %q is not a UUID", raw))
	}
	return id, nil
}

// loadDestination reads a destination, turning absence into a 404 problem.
func (g *Gateway) loadDestination(r *http.Request, id string) (store.Destination, error) {
	d, err := g.store.Destination(r.Context(), id)
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
func canSee(s Scopes, d store.Destination) bool {
	for _, svc := range d.Services {
		if s.CanLookUp(svc.Regions, svc.Identifier) {
			return true
		}
	}
	return false
}

// handleGetDestination answers GET /v1/destinations/{destinationId}:
// the private view for the destination's receivers, managers and
// operators, the public view for senders whose region scope reaches it.
func (g *Gateway) handleGetDestination(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := pathDestinationID(r)
	if err != nil {
		return err
	}
	d, err := g.loadDestination(r, id)
	if err != nil {
		return err
	}
	var view any
	switch {
	case p.Scopes.CanSubscribe(id) || p.Scopes.CanManage(id) || p.Scopes.IsAdmin():
		view = privateView(d)
	case canSee(p.Scopes, d):
		view = publicView(d)
	default:
		return forbidden(scopeSubscribe+id,
			fmt.Sprintf("no scope covers destination %s: want subscribe:destination:%s, manage:destination:%s or a send:region scope reaching one of its regions", id, id, id))
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, view)
	return nil
}

// handleGetKey answers GET /v1/destinations/{destinationId}/keys/{keyId}
// with the public JWK. It needs no token (the spec names no security);
// keys past their validity are gone.
func (g *Gateway) handleGetKey(w http.ResponseWriter, r *http.Request) {
	if err := g.getKey(w, r); err != nil {
		g.writeError(w, r, err)
	}
}

func (g *Gateway) getKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathDestinationID(r)
	if err != nil {
		return err
	}
	kid := r.PathValue("keyId")
	if n := len(kid); n < 8 || n > 64 {
		return problem.Invalid("keyId", fmt.Sprintf("keyId must have 8 to 64 characters, has %d", n))
	}
	k, err := g.store.Key(r.Context(), id, kid)
	if errors.Is(err, store.ErrNotFound) {
		return problem.KeyNotFound(id, kid)
	}
	if err != nil {
		return fmt.Errorf("read key %s of %s: %w", kid, id, err)
	}
	if !k.ValidAt(g.now()) {
		return problem.KeyNotFound(id, kid)
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(k.JWK)
	return nil
}
