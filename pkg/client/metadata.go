package client

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// MetadataSchemaURI is the $schema a Sender writes into the metadata: the
// metadata schema version this package produces and checks.
const MetadataSchemaURI = "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json"

// HashSHA512 is the only hash type metadata schema 1.0.0 allows.
const HashSHA512 = "sha512"

// Purpose says what an attachment is, as metadata schema 1.0.0 names it.
type Purpose string

// Attachment purposes of metadata schema 1.0.0. Later schema versions add
// "data" for specialist data too large for the data JWE; 1.0.0 does not
// know it, so this package refuses it.
const (
	// PurposeForm is a generated PDF rendering of the whole application form.
	PurposeForm Purpose = "form"
	// PurposeAttachment is a document the applicant uploaded.
	PurposeAttachment Purpose = "attachment"
	// PurposeReport is a document the online service produced afterwards.
	PurposeReport Purpose = "report"
)

func (p Purpose) valid() bool {
	return p == PurposeForm || p == PurposeAttachment || p == PurposeReport
}

// ErrInvalidMetadata means metadata breaks a rule of the metadata schema.
var ErrInvalidMetadata = errors.New("invalid metadata")

// Hash is a hash of unencrypted content: type "sha512", content in lower-case hex.
type Hash struct {
	Type    string `json:"type"`
	Content string `json:"content"`
}

// SHA512 returns the Hash of b.
func SHA512(b []byte) Hash {
	sum := sha512.Sum512(b)
	return Hash{Type: HashSHA512, Content: hex.EncodeToString(sum[:])}
}

func hashOf(h hash.Hash) Hash {
	return Hash{Type: HashSHA512, Content: hex.EncodeToString(h.Sum(nil))}
}

// SubmissionSchema references the schema of the specialist data.
type SubmissionSchema struct {
	SchemaURI string `json:"schemaUri"`
	// MimeType is "application/json" or "application/xml".
	MimeType string `json:"mimeType"`
}

// DataInfo describes the specialist data in the metadata.
type DataInfo struct {
	Hash             Hash             `json:"hash"`
	SubmissionSchema SubmissionSchema `json:"submissionSchema"`
	// Signature describes a signature of the data, as the schema defines it.
	Signature json.RawMessage `json:"signature,omitempty"`
}

// AttachmentInfo describes one attachment in the metadata.
type AttachmentInfo struct {
	Hash        Hash            `json:"hash"`
	Signature   json.RawMessage `json:"signature,omitempty"`
	Purpose     Purpose         `json:"purpose"`
	Filename    string          `json:"filename,omitempty"`
	Description string          `json:"description,omitempty"`
	MimeType    string          `json:"mimeType"`
	ID          string          `json:"attachmentId"`
}

// ContentStructure lists what a submission contains.
type ContentStructure struct {
	Data        *DataInfo        `json:"data,omitempty"`
	Attachments []AttachmentInfo `json:"attachments"`
}

// ServiceType names an administrative service by URN, for a LeiKa service
// "urn:de:fim:leika:leistung:<14 digits>".
type ServiceType struct {
	Identifier  string `json:"identifier"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
}

// Metadata is the decrypted metadata of a submission: the members this
// package checks, and Raw, the whole document, for the rest
// (replyChannel, paymentInformation, additionalReferenceInfo, …).
type Metadata struct {
	Schema            string           `json:"$schema,omitempty"`
	ContentStructure  ContentStructure `json:"contentStructure"`
	PublicServiceType *ServiceType     `json:"publicServiceType,omitempty"`
	Raw               json.RawMessage  `json:"-"`
}

// reservedMetadata are the members a Sender writes itself.
var reservedMetadata = []string{"$schema", "contentStructure", "publicServiceType"}

// buildMetadata writes the metadata document: extra members first, then
// the ones this package owns.
func buildMetadata(extra map[string]any, svc ServiceType, data *DataInfo, atts []AttachmentInfo) ([]byte, error) {
	doc := make(map[string]any, len(extra)+3)
	for k, v := range extra {
		if slices.Contains(reservedMetadata, k) {
			return nil, fmt.Errorf("%w: extra member %q is written by the client", ErrInvalidMetadata, k)
		}
		doc[k] = v
	}
	if atts == nil {
		atts = []AttachmentInfo{}
	}
	doc["$schema"] = MetadataSchemaURI
	doc["contentStructure"] = ContentStructure{Data: data, Attachments: atts}
	doc["publicServiceType"] = svc
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMetadata, err)
	}
	return b, nil
}

var (
	hexSHA512RE = regexp.MustCompile(`^[a-f0-9]{128}$`)
	mimeTypeRE  = regexp.MustCompile(`^[-\w.]+/[-\w.+]+$`)
	serviceRE   = regexp.MustCompile(`^urn:[a-z0-9][a-z0-9-]{0,31}:[a-z0-9()+,.:=@;$_!*'%/?#-]+$`)
)

var (
	dataMimeTypes    = []string{"application/json", "application/xml"}
	signatureFormats = []string{"cms", "xml", "pdf", "asic", "json"}
)

// parseMetadata checks raw against the metadata schema's structural rules
// and returns it parsed. With a compiled schema, raw must also pass it.
// Errors wrap ErrInvalidMetadata and name the offending member.
func parseMetadata(raw []byte, schema *jsonschema.Schema) (Metadata, error) {
	if schema != nil {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return Metadata{}, fmt.Errorf("%w: not JSON: %v", ErrInvalidMetadata, err)
		}
		if err := schema.Validate(doc); err != nil {
			return Metadata{}, fmt.Errorf("%w: %v", ErrInvalidMetadata, err)
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return Metadata{}, fmt.Errorf("%w: not a JSON object", ErrInvalidMetadata)
	}
	csRaw, ok := top["contentStructure"]
	if !ok || isNull(csRaw) {
		return Metadata{}, fmt.Errorf("%w: contentStructure is missing", ErrInvalidMetadata)
	}
	var cs map[string]json.RawMessage
	if err := json.Unmarshal(csRaw, &cs); err != nil || cs == nil {
		return Metadata{}, fmt.Errorf("%w: contentStructure must be an object", ErrInvalidMetadata)
	}
	if a, ok := cs["attachments"]; !ok || isNull(a) {
		return Metadata{}, fmt.Errorf("%w: contentStructure.attachments is missing", ErrInvalidMetadata)
	}
	var m Metadata
	if err := json.Unmarshal(raw, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Metadata{}, fmt.Errorf("%w: %s must be a JSON %s", ErrInvalidMetadata, te.Field, jsonKind(te.Type.Kind().String()))
		}
		return Metadata{}, fmt.Errorf("%w: %v", ErrInvalidMetadata, err)
	}
	if d, ok := cs["data"]; ok && isNull(d) {
		return Metadata{}, fmt.Errorf("%w: contentStructure.data must be an object", ErrInvalidMetadata)
	}
	if err := m.check(); err != nil {
		return Metadata{}, err
	}
	m.Raw = append(json.RawMessage(nil), raw...)
	return m, nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "object"
	case "slice":
		return "array"
	}
	return goKind
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidMetadata, field, fmt.Sprintf(format, args...))
}

// check applies the schema's rules to the parsed members.
func (m Metadata) check() error {
	if d := m.ContentStructure.Data; d != nil {
		if err := checkHash("contentStructure.data.hash", d.Hash); err != nil {
			return err
		}
		s := d.SubmissionSchema
		if u, err := url.Parse(s.SchemaURI); err != nil || !u.IsAbs() {
			return invalid("contentStructure.data.submissionSchema.schemaUri", "must be an absolute URI, got %q", s.SchemaURI)
		}
		if !slices.Contains(dataMimeTypes, s.MimeType) {
			return invalid("contentStructure.data.submissionSchema.mimeType", "must be one of %s, got %q", strings.Join(dataMimeTypes, ", "), s.MimeType)
		}
		if err := checkSignature("contentStructure.data.signature", d.Signature); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(m.ContentStructure.Attachments))
	for i, a := range m.ContentStructure.Attachments {
		f := fmt.Sprintf("contentStructure.attachments[%d]", i)
		if err := checkHash(f+".hash", a.Hash); err != nil {
			return err
		}
		if !a.Purpose.valid() {
			return invalid(f+".purpose", "must be form, attachment or report, got %q", a.Purpose)
		}
		if !mimeTypeRE.MatchString(a.MimeType) {
			return invalid(f+".mimeType", "must be a media type, got %q", a.MimeType)
		}
		if err := uuid.Validate(a.ID); err != nil || len(a.ID) != 36 {
			return invalid(f+".attachmentId", "must be a UUID, got %q", a.ID)
		}
		id := strings.ToLower(a.ID)
		if seen[id] {
			return invalid(f+".attachmentId", "%s is listed twice", a.ID)
		}
		seen[id] = true
		if err := checkSignature(f+".signature", a.Signature); err != nil {
			return err
		}
	}
	if p := m.PublicServiceType; p != nil {
		if n := len(p.Identifier); n < 7 || n > 255 || !serviceRE.MatchString(p.Identifier) {
			return invalid("publicServiceType.identifier", "must be a service URN of 7 to 255 characters, got %q", p.Identifier)
		}
	}
	return nil
}

func checkHash(field string, h Hash) error {
	if h.Type != HashSHA512 {
		return invalid(field+".type", "must be %q, got %q", HashSHA512, h.Type)
	}
	if !hexSHA512RE.MatchString(h.Content) {
		return invalid(field+".content", "must be 128 lower-case hex digits")
	}
	return nil
}

func checkSignature(field string, raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	var sig struct {
		Format   *string `json:"signatureFormat"`
		Detached *bool   `json:"detachedSignature"`
	}
	if err := json.Unmarshal(raw, &sig); err != nil {
		return invalid(field, "must be an object with signatureFormat and detachedSignature")
	}
	if sig.Format == nil || !slices.Contains(signatureFormats, *sig.Format) {
		return invalid(field+".signatureFormat", "must be one of %s", strings.Join(signatureFormats, ", "))
	}
	if sig.Detached == nil {
		return invalid(field+".detachedSignature", "is missing")
	}
	return nil
}
