package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// CallbackInput is FIT-Connect's CreateCallback.
type CallbackInput struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// apply sets d's callback. Without a secret, the URL d already calls back
// keeps its secret: secrets are write-only, so a client that puts back the
// destination it read cannot repeat it.
func (c *CallbackInput) apply(d *store.Destination) {
	secret := c.Secret
	if secret == "" && c.URL == d.CallbackURL {
		secret = d.CallbackSecret
	}
	d.CallbackURL, d.CallbackSecret = c.URL, secret
}

// DestinationInput is FIT-Connect's CreateDestination plus Amtsbote's
// optional destinationId, homeRegion and status.
type DestinationInput struct {
	DestinationID       string                    `json:"destinationId"`
	HomeRegion          *string                   `json:"homeRegion"`
	Status              *store.DestinationStatus  `json:"status"`
	ContactInformation  *store.ContactInformation `json:"contactInformation"`
	Services            []store.Service           `json:"services"`
	Callback            *CallbackInput            `json:"callback"`
	EncryptionKID       *string                   `json:"encryptionKid"`
	EncryptionPublicKey json.RawMessage           `json:"encryptionPublicKey"`
	SigningPublicKey    json.RawMessage           `json:"signingPublicKey"`
	ReplyChannels       json.RawMessage           `json:"replyChannels"`
	MetadataVersions    []string                  `json:"metadataVersions"`
}

// ParseDestination reads a destination as operators create it: FIT-Connect's
// CreateDestination body plus optional destinationId (a UUID, generated when
// absent), homeRegion (an ARS prefix without "DE", derived from the service
// regions when absent) and status (default created). Members the format
// does not define are refused. Both keys must pass FIT-Connect's key rules
// and encryptionKid must be the encryption key's kid.
//
// It returns the destination and its two keys, ready for
// store.CreateDestination. Errors are *problem.Problem values naming the
// offending field.
func ParseDestination(raw []byte) (store.Destination, []store.Key, error) {
	var in DestinationInput
	if err := problem.DecodeJSON(raw, &in, true); err != nil {
		return store.Destination{}, nil, err
	}
	return in.Destination()
}

// Destination checks in and returns the destination and its two keys,
// ready for Registry.CreateDestination. Errors are *problem.Problem
// values naming the offending field.
func (in DestinationInput) Destination() (store.Destination, []store.Key, error) {
	required := []struct {
		field   string
		present bool
	}{
		{"contactInformation", in.ContactInformation != nil},
		{"services", in.Services != nil},
		{"encryptionKid", in.EncryptionKID != nil},
		{"encryptionPublicKey", len(in.EncryptionPublicKey) > 0 && !isNull(in.EncryptionPublicKey)},
		{"signingPublicKey", len(in.SigningPublicKey) > 0 && !isNull(in.SigningPublicKey)},
		{"metadataVersions", in.MetadataVersions != nil},
	}
	for _, r := range required {
		if !r.present {
			return store.Destination{}, nil, problem.Invalid(r.field, r.field+" is required")
		}
	}

	d := store.Destination{
		Status:           store.StatusCreated,
		Contact:          *in.ContactInformation,
		Services:         in.Services,
		EncryptionKID:    *in.EncryptionKID,
		MetadataVersions: in.MetadataVersions,
		ReplyChannels:    in.ReplyChannels,
	}
	if in.DestinationID == "" {
		d.ID = uuid.NewString()
	} else {
		u, err := uuid.Parse(in.DestinationID)
		if err != nil || len(in.DestinationID) != 36 {
			return store.Destination{}, nil, problem.Invalid("destinationId", fmt.Sprintf("destinationId %q is not a UUID", in.DestinationID))
		}
		d.ID = u.String()
	}
	if in.Status != nil {
		d.Status = *in.Status
	}
	if in.Callback != nil {
		d.CallbackURL, d.CallbackSecret = in.Callback.URL, in.Callback.Secret
	}
	if in.HomeRegion != nil {
		d.HomeRegion = *in.HomeRegion
	} else {
		d.HomeRegion = store.DeriveHomeRegion(d.Services)
	}

	// Keys first: a key that breaks a rule is named as such, even when
	// encryptionKid repeats its faulty kid.
	encKey, encJWK, err := decodeKey("encryptionPublicKey", in.EncryptionPublicKey, jose.Encryption)
	if err != nil {
		return store.Destination{}, nil, err
	}
	if encKey.KeyID != d.EncryptionKID {
		return store.Destination{}, nil, problem.Invalid("encryptionKid",
			fmt.Sprintf("encryptionKid %q must equal encryptionPublicKey.kid %q", d.EncryptionKID, encKey.KeyID))
	}
	sigKey, sigJWK, err := decodeKey("signingPublicKey", in.SigningPublicKey, jose.Signing)
	if err != nil {
		return store.Destination{}, nil, err
	}
	if sigKey.KeyID == encKey.KeyID {
		return store.Destination{}, nil, problem.Invalid("signingPublicKey.kid",
			fmt.Sprintf("the signing key's kid %q must differ from the encryption key's", sigKey.KeyID))
	}
	d.SigningKID = sigKey.KeyID
	if err := d.Validate(in.Callback != nil); err != nil {
		return store.Destination{}, nil, err
	}
	keys := []store.Key{
		{DestinationID: d.ID, KID: encKey.KeyID, Use: store.UseEncryption, JWK: encJWK},
		{DestinationID: d.ID, KID: sigKey.KeyID, Use: store.UseSigning, JWK: sigJWK},
	}
	return d, keys, nil
}

// decodedKey is what a checked key yields: its kid.
type decodedKey struct{ KeyID string }

// decodeKey checks raw against the key rules for purpose p and returns the
// JWK as it is stored: public members only.
func decodeKey(field string, raw json.RawMessage, p jose.Purpose) (decodedKey, json.RawMessage, error) {
	jwk, err := jose.ValidatePublicKey(raw, p)
	if err != nil {
		return decodedKey{}, nil, KeyProblem(field, err)
	}
	pub, err := publicJWK(raw)
	if err != nil {
		return decodedKey{}, nil, problem.InvalidKey(field, err.Error())
	}
	return decodedKey{KeyID: jwk.KeyID}, pub, nil
}

// KeyProblem turns a key rule violation of the JWK at field into a
// problem naming the member; other errors pass through.
func KeyProblem(field string, err error) error {
	var re *jose.RuleError
	if errors.As(err, &re) {
		return problem.InvalidKey(problem.JoinField(field, re.Field), re.Reason)
	}
	if errors.Is(err, jose.ErrKeyRule) {
		return problem.InvalidKey(field, err.Error())
	}
	return err
}

// publicMembers are the JWK members a stored key keeps.
var publicMembers = []string{"kty", "kid", "alg", "use", "key_ops", "n", "e", "x5c", "x5t", "x5t#S256"}

// publicJWK re-encodes a checked JWK with its public members only, so
// nothing a client smuggled in alongside is ever served back.
func publicJWK(raw []byte) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("jwk is not an object: %w", err)
	}
	out := make(map[string]json.RawMessage, len(publicMembers))
	for _, k := range publicMembers {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode jwk: %w", err)
	}
	return b, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// UpdateInput is FIT-Connect's UpdateDestination and PatchDestination plus
// Amtsbote's optional homeRegion: Replace requires what UpdateDestination
// requires, Patch changes only the members present.
type UpdateInput struct {
	Status             *store.DestinationStatus  `json:"status"`
	ContactInformation *store.ContactInformation `json:"contactInformation"`
	Services           []store.Service           `json:"services"`
	Callback           *CallbackInput            `json:"callback"`
	EncryptionKID      *string                   `json:"encryptionKid"`
	ReplyChannels      json.RawMessage           `json:"replyChannels"`
	MetadataVersions   []string                  `json:"metadataVersions"`
	HomeRegion         *string                   `json:"homeRegion"`
}

// Replace checks in as a whole new state and returns the change for
// Registry.UpdateDestination: every field is replaced (not the id, the keys
// or, when absent, homeRegion); an absent callback removes it.
func (in UpdateInput) Replace() (func(*store.Destination) (bool, error), error) {
	for _, f := range []struct {
		name    string
		present bool
	}{
		{"status", in.Status != nil}, {"contactInformation", in.ContactInformation != nil},
		{"services", in.Services != nil}, {"encryptionKid", in.EncryptionKID != nil},
		{"metadataVersions", in.MetadataVersions != nil},
	} {
		if !f.present {
			return nil, problem.Invalid(f.name, f.name+" is required")
		}
	}
	return func(d *store.Destination) (bool, error) {
		d.Status = *in.Status
		d.Contact = *in.ContactInformation
		d.Services = in.Services
		d.EncryptionKID = *in.EncryptionKID
		d.MetadataVersions = in.MetadataVersions
		d.ReplyChannels = in.ReplyChannels
		if in.Callback != nil {
			in.Callback.apply(d)
		} else {
			d.CallbackURL, d.CallbackSecret = "", ""
		}
		if in.HomeRegion != nil {
			d.HomeRegion = *in.HomeRegion
		}
		return in.Callback != nil, nil
	}, nil
}

// Patch checks in as a partial change and returns it for
// Registry.UpdateDestination. A status may be patched to active, inactive
// or decommissioned, as PatchDestination allows.
func (in UpdateInput) Patch() (func(*store.Destination) (bool, error), error) {
	if in.Status == nil && in.ContactInformation == nil && in.Services == nil && in.Callback == nil &&
		in.EncryptionKID == nil && in.ReplyChannels == nil && in.MetadataVersions == nil && in.HomeRegion == nil {
		return nil, problem.Invalid("body", "the body changes none of status, contactInformation, services, callback, encryptionKid, replyChannels, metadataVersions "+
			"(null changes nothing; a callback is removed by a PUT without one)")
	}
	if in.Status != nil && *in.Status == store.StatusCreated {
		return nil, problem.Invalid("status", "status may be patched to active, inactive or decommissioned")
	}
	return func(d *store.Destination) (bool, error) {
		if in.Status != nil {
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
			in.Callback.apply(d)
		}
		if in.HomeRegion != nil {
			d.HomeRegion = *in.HomeRegion
		}
		return in.Callback != nil, nil
	}, nil
}

// KeyPurpose tells an encryption key from a signing key by the JWK's
// key_ops.
func KeyPurpose(members map[string]json.RawMessage) (jose.Purpose, error) {
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
