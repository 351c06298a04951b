package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// callbackInput is FIT-Connect's CreateCallback.
type callbackInput struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// destinationInput is FIT-Connect's CreateDestination plus Amtsbote's
// optional destinationId, homeRegion and status.
type destinationInput struct {
	DestinationID       string                    `json:"destinationId"`
	HomeRegion          *string                   `json:"homeRegion"`
	Status              *store.DestinationStatus  `json:"status"`
	ContactInformation  *store.ContactInformation `json:"contactInformation"`
	Services            []store.Service           `json:"services"`
	Callback            *callbackInput            `json:"callback"`
	EncryptionKID       *string                   `json:"encryptionKid"`
	EncryptionPublicKey json.RawMessage           `json:"encryptionPublicKey"`
	SigningPublicKey    json.RawMessage           `json:"signingPublicKey"`
	ReplyChannels       json.RawMessage           `json:"replyChannels"`
	MetadataVersions    []string                  `json:"metadataVersions"`
}

// DecodeDestination reads a destination as operators create it: FIT-Connect's
// CreateDestination body plus optional destinationId (a UUID, generated when
// absent), homeRegion (an ARS prefix without "DE", derived from the service
// regions when absent) and status (default created). Members the format
// does not define are refused. Both keys must pass FIT-Connect's key rules
// and encryptionKid must be the encryption key's kid.
//
// It returns the destination and its two keys, ready for
// store.CreateDestination. Errors are *problem.Problem values naming the
// offending field.
func DecodeDestination(raw []byte) (store.Destination, []store.Key, error) {
	var in destinationInput
	if err := decodeJSON(raw, &in, true); err != nil {
		return store.Destination{}, nil, err
	}
	return in.destination()
}

func (in destinationInput) destination() (store.Destination, []store.Key, error) {
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
		id, ok := canonicalUUID(in.DestinationID)
		if !ok {
			return store.Destination{}, nil, problem.Invalid("destinationId", fmt.Sprintf("destinationId %q is not a UUID", in.DestinationID))
		}
		d.ID = id
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
		d.HomeRegion = deriveHomeRegion(d.Services)
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
	if err := validateDestination(&d, in.Callback != nil); err != nil {
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
		return decodedKey{}, nil, keyProblem(field, err)
	}
	pub, err := publicJWK(raw)
	if err != nil {
		return decodedKey{}, nil, problem.InvalidKey(field, err.Error())
	}
	return decodedKey{KeyID: jwk.KeyID}, pub, nil
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

var (
	semverPattern  = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$`)
	homeRegionPatt = regexp.MustCompile(`^[0-9]*$`)
)

// validateDestination checks every field of d against FIT-Connect's schema
// and Amtsbote's rules. withCallback says whether a callback was given, so
// its secret is checked.
func validateDestination(d *store.Destination, withCallback bool) error {
	if !d.Status.Valid() {
		return problem.Invalid("status", fmt.Sprintf("status %q must be one of created, active, inactive, decommissioned", d.Status))
	}
	if err := validateContact(d.Contact); err != nil {
		return err
	}
	if err := validateServices(d.Services); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(d.EncryptionKID); n == 0 || n > 64 {
		return problem.Invalid("encryptionKid", fmt.Sprintf("encryptionKid must have 1 to 64 characters, has %d", n))
	}
	if len(d.MetadataVersions) == 0 {
		return problem.Invalid("metadataVersions", "metadataVersions must list at least one version")
	}
	for i, v := range d.MetadataVersions {
		f := fmt.Sprintf("metadataVersions[%d]", i)
		if !semverPattern.MatchString(v) {
			return problem.Invalid(f, fmt.Sprintf("%q is not a semantic version major.minor.patch", v))
		}
		if slices.Index(d.MetadataVersions, v) < i {
			return problem.Invalid(f, fmt.Sprintf("version %q is listed twice", v))
		}
	}
	if len(d.ReplyChannels) > 0 && !isNull(d.ReplyChannels) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(d.ReplyChannels, &m); err != nil || len(m) == 0 {
			return problem.Invalid("replyChannels", "replyChannels must be an object with at least one channel")
		}
		for k, v := range m {
			var o map[string]any
			if !isNull(v) && json.Unmarshal(v, &o) != nil {
				return problem.Invalid("replyChannels."+k, "each reply channel must be an object")
			}
		}
		d.ReplyChannels = bytes.TrimSpace(d.ReplyChannels)
	} else {
		d.ReplyChannels = nil
	}
	if withCallback || d.CallbackURL != "" || d.CallbackSecret != "" {
		if err := validateCallback(d.CallbackURL, d.CallbackSecret); err != nil {
			return err
		}
	}
	if d.HomeRegion != "" {
		if !homeRegionPatt.MatchString(d.HomeRegion) || !slices.Contains(arsLevels, len(d.HomeRegion)) {
			return problem.Invalid("homeRegion", fmt.Sprintf("homeRegion %q must be an ARS prefix of 2, 3, 5, 9 or 12 digits, without \"DE\"", d.HomeRegion))
		}
	}
	return nil
}

func validateContact(c store.ContactInformation) error {
	for _, f := range []struct{ name, v string }{
		{"legalName", c.LegalName}, {"address", c.Address}, {"phone", c.Phone}, {"email", c.Email},
	} {
		if strings.TrimSpace(f.v) == "" {
			return problem.Invalid("contactInformation."+f.name, "contactInformation."+f.name+" is required")
		}
	}
	if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email {
		return problem.Invalid("contactInformation.email", fmt.Sprintf("%q is not an e-mail address", c.Email))
	}
	return nil
}

func validateServices(services []store.Service) error {
	if len(services) == 0 {
		return problem.Invalid("services", "services must list at least one service")
	}
	for i, s := range services {
		f := fmt.Sprintf("services[%d]", i)
		if err := checkServiceURN(s.Identifier); err != nil {
			return problem.Invalid(f+".identifier", err.Error())
		}
		for j := range i {
			if services[j].Identifier == s.Identifier && windowsOverlap(services[j], s) {
				return problem.Invalid(f+".identifier", fmt.Sprintf("service %s is listed twice for the same time", s.Identifier))
			}
		}
		if len(s.Regions) == 0 {
			return problem.Invalid(f+".regions", "regions must list at least one region")
		}
		for j, r := range s.Regions {
			rf := fmt.Sprintf("%s.regions[%d]", f, j)
			if err := checkRegion(r); err != nil {
				return problem.Invalid(rf, err.Error())
			}
			if slices.Index(s.Regions, r) < j {
				return problem.Invalid(rf, fmt.Sprintf("region %s is listed twice", r))
			}
		}
		if len(s.SubmissionSchemas) == 0 {
			return problem.Invalid(f+".submissionSchemas", "submissionSchemas must list at least one schema")
		}
		for j, sc := range s.SubmissionSchemas {
			sf := fmt.Sprintf("%s.submissionSchemas[%d]", f, j)
			if sc.MimeType != "application/json" && sc.MimeType != "application/xml" {
				return problem.Invalid(sf+".mimeType", fmt.Sprintf("mimeType %q must be application/json or application/xml", sc.MimeType))
			}
			if u, err := url.Parse(sc.SchemaURI); err != nil || u.Scheme == "" {
				return problem.Invalid(sf+".schemaUri", fmt.Sprintf("schemaUri %q is not an absolute URI", sc.SchemaURI))
			}
			if slices.Index(s.SubmissionSchemas, sc) < j {
				return problem.Invalid(sf, "schema is listed twice")
			}
		}
		if s.ValidFrom != nil && s.ValidUntil != nil && !s.ValidFrom.Before(*s.ValidUntil) {
			return problem.Invalid(f+".validUntil", "validUntil must be after validFrom")
		}
	}
	return nil
}

// windowsOverlap reports whether the validity windows of a and b share an instant.
func windowsOverlap(a, b store.Service) bool {
	if a.ValidUntil != nil && b.ValidFrom != nil && !a.ValidUntil.After(*b.ValidFrom) {
		return false
	}
	if b.ValidUntil != nil && a.ValidFrom != nil && !b.ValidUntil.After(*a.ValidFrom) {
		return false
	}
	return true
}

func validateCallback(rawURL, secret string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || len(rawURL) < 9 {
		return problem.Invalid("callback.url", fmt.Sprintf("callback url %q must be an absolute https URL", rawURL))
	}
	if u.User != nil {
		return problem.Invalid("callback.url", "callback url must not carry credentials")
	}
	if n := utf8.RuneCountInString(secret); n < 32 || n > 512 {
		return problem.Invalid("callback.secret", fmt.Sprintf("callback secret must have 32 to 512 characters, has %d", n))
	}
	return nil
}

// deriveHomeRegion returns the longest ARS level prefix common to all
// service regions, without "DE"; "" when they share no Land.
func deriveHomeRegion(services []store.Service) string {
	var common string
	first := true
	for _, s := range services {
		for _, r := range s.Regions {
			ars := strings.TrimPrefix(r, "DE")
			if first {
				common, first = ars, false
				continue
			}
			n := 0
			for n < len(common) && n < len(ars) && common[n] == ars[n] {
				n++
			}
			common = common[:n]
		}
	}
	for i := len(arsLevels) - 1; i >= 0; i-- {
		if arsLevels[i] <= len(common) {
			return common[:arsLevels[i]]
		}
	}
	return ""
}
