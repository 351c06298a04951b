package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func fitSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := loadSchema(http.DefaultClient, metadataSchemaPath(t))
	if err != nil {
		t.Fatalf("load schema: %v", err)
	}
	return sch
}

func validate(t *testing.T, sch *jsonschema.Schema, raw []byte) error {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return sch.Validate(doc)
}

// TestBuiltMetadataIsSchemaValid checks what a Sender writes against
// FIT-Connect's metadata schema file itself.
func TestBuiltMetadataIsSchemaValid(t *testing.T) {
	sch := fitSchema(t)
	svc := ServiceType{Identifier: serviceURN, Name: "Bauantrag", Description: "Antrag auf Baugenehmigung"}
	data := &DataInfo{Hash: SHA512([]byte(`{"a":1}`)), SubmissionSchema: SubmissionSchema{SchemaURI: schemaURI, MimeType: "application/json"}}
	xmlData := &DataInfo{Hash: SHA512([]byte(`<a/>`)), SubmissionSchema: SubmissionSchema{SchemaURI: "urn:xoev-de:bauen:standard:xbau:2.3", MimeType: "application/xml"},
		Signature: json.RawMessage(`{"signatureFormat":"xml","detachedSignature":false}`)}
	atts := []AttachmentInfo{
		{Hash: SHA512([]byte("plan")), Purpose: PurposeAttachment, Filename: "lageplan.pdf", MimeType: "application/pdf", ID: "0b799252-deb9-42b0-98d3-c50d24bbafe0"},
		{Hash: SHA512([]byte("form")), Purpose: PurposeForm, MimeType: "application/pdf", Description: "Antragsformular", ID: "2046f9f1-dc89-4440-9c24-c76a8f40d668"},
		{Hash: SHA512([]byte("report")), Purpose: PurposeReport, MimeType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document", ID: "879ee109-a690-4db8-ab32-424284184d7d"},
	}
	extra := map[string]any{
		"replyChannel":            map[string]any{"eMail": map[string]any{"address": "erika@example.org"}},
		"additionalReferenceInfo": map[string]any{"senderReference": "BA-2026-0042", "applicationDate": "2026-03-02"},
		"authenticationInformation": []any{
			map[string]any{"type": "identificationReport", "version": "1.0.0", "content": "eyJhbGciOiJQUzUxMiJ9.e30.c2ln"},
		},
		"paymentInformation": map[string]any{
			"transactionReference": "KZ-4711", "transactionId": "9xxd-432x-6543", "paymentMethod": "CREDITCARD",
			"status": "BOOKED", "grossAmount": 12.5,
		},
	}
	for _, tc := range []struct {
		name  string
		extra map[string]any
		data  *DataInfo
		atts  []AttachmentInfo
	}{
		{"data and attachments", extra, data, atts},
		{"nothing but the structure", nil, nil, nil},
		{"signed xml data", nil, xmlData, nil},
		{"attachments only", nil, nil, atts[:1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := buildMetadata(tc.extra, svc, tc.data, tc.atts)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, sch, raw); err != nil {
				t.Fatalf("schema: %v\n%s", err, raw)
			}
			m, err := parseMetadata(raw, nil)
			if err != nil {
				t.Fatalf("code checks: %v", err)
			}
			if m.Schema != MetadataSchemaURI || len(m.ContentStructure.Attachments) != len(tc.atts) || m.PublicServiceType.Identifier != serviceURN {
				t.Fatalf("parsed %+v", m)
			}
			if tc.data != nil && m.ContentStructure.Data.Hash != tc.data.Hash {
				t.Fatalf("data hash %+v", m.ContentStructure.Data.Hash)
			}
		})
	}
}

// brokenMetadata are documents that break the metadata schema; the code's
// checks must refuse each, naming the member.
var brokenMetadata = []struct {
	name  string
	doc   string
	field string
	// codeOnly marks rules the schema does not state.
	codeOnly bool
}{
	{"not an object", `[]`, "", false},
	{"no contentStructure", `{"publicServiceType":{"identifier":"` + serviceURN + `"}}`, "contentStructure", false},
	{"contentStructure null", `{"contentStructure":null}`, "contentStructure", false},
	{"no attachments", `{"contentStructure":{}}`, "attachments", false},
	{"attachments an object", `{"contentStructure":{"attachments":{}}}`, "attachments", false},
	{"data null", `{"contentStructure":{"attachments":[],"data":null}}`, "data", false},
	{"hash a string", `{"contentStructure":{"attachments":[],"data":{"hash":"abc","submissionSchema":{"schemaUri":"` + schemaURI + `","mimeType":"application/json"}}}}`, "hash", false},
	{"hash type", dataDoc(`"type":"sha256","content":"`+hex128+`"`, schemaURI, "application/json"), "hash.type", false},
	{"hash upper case", dataDoc(`"type":"sha512","content":"`+strings.ToUpper(hex128)+`"`, schemaURI, "application/json"), "hash.content", false},
	{"hash short", dataDoc(`"type":"sha512","content":"abc"`, schemaURI, "application/json"), "hash.content", false},
	{"schema uri relative", dataDoc(okHash, "bauantrag.json", "application/json"), "schemaUri", false},
	{"data mime type", dataDoc(okHash, schemaURI, "text/plain"), "mimeType", false},
	{"no submissionSchema", `{"contentStructure":{"attachments":[],"data":{"hash":{` + okHash + `}}}}`, "schemaUri", false},
	{"signature incomplete", `{"contentStructure":{"attachments":[],"data":{"hash":{` + okHash + `},"submissionSchema":{"schemaUri":"` + schemaURI + `","mimeType":"application/json"},"signature":{"signatureFormat":"cms"}}}}`, "detachedSignature", false},
	{"purpose data", attachmentDoc(`"purpose":"data","mimeType":"application/pdf","attachmentId":"` + attID + `"`), "purpose", false},
	{"attachment mime type", attachmentDoc(`"purpose":"form","mimeType":"pdf","attachmentId":"` + attID + `"`), "mimeType", false},
	{"attachment id", attachmentDoc(`"purpose":"form","mimeType":"application/pdf","attachmentId":"anlage-1-anlage-1-anlage-1-anlage-1"`), "attachmentId", false},
	{"attachment without hash", `{"contentStructure":{"attachments":[{"purpose":"form","mimeType":"application/pdf","attachmentId":"` + attID + `"}]}}`, "hash", false},
	{"service not a URN", `{"contentStructure":{"attachments":[]},"publicServiceType":{"identifier":"Bauantrag"}}`, "publicServiceType.identifier", false},
	{"service without identifier", `{"contentStructure":{"attachments":[]},"publicServiceType":{"name":"Bauantrag"}}`, "publicServiceType.identifier", false},
	{"attachment twice", `{"contentStructure":{"attachments":[` + attachment + `,` + attachment + `]}}`, "attachmentId", true},
}

const (
	hex128     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	okHash     = `"type":"sha512","content":"` + hex128 + `"`
	attID      = "0b799252-deb9-42b0-98d3-c50d24bbafe0"
	attachment = `{"hash":{` + okHash + `},"purpose":"form","mimeType":"application/pdf","attachmentId":"` + attID + `"}`
)

func dataDoc(hash, uri, mimeType string) string {
	return `{"contentStructure":{"attachments":[],"data":{"hash":{` + hash + `},"submissionSchema":{"schemaUri":"` + uri + `","mimeType":"` + mimeType + `"}}}}`
}

func attachmentDoc(members string) string {
	return `{"contentStructure":{"attachments":[{"hash":{` + okHash + `},` + members + `}]}}`
}

func TestMetadataRules(t *testing.T) {
	sch := func() *jsonschema.Schema {
		if _, err := metadataSchemaFile(); err != nil {
			return nil
		}
		return fitSchema(t)
	}()
	if _, err := parseMetadata([]byte(`{"contentStructure":{"attachments":[`+attachment+`]}}`), sch); err != nil {
		t.Fatalf("minimal metadata refused: %v", err)
	}
	for _, tc := range brokenMetadata {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseMetadata([]byte(tc.doc), nil)
			if !errors.Is(err, ErrInvalidMetadata) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("code checks: %v, want ErrInvalidMetadata naming %q", err, tc.field)
			}
			if sch == nil || tc.codeOnly {
				return
			}
			if err := validate(t, sch, []byte(tc.doc)); err == nil {
				t.Fatal("the schema accepts it; the table is wrong")
			}
			if _, err := parseMetadata([]byte(tc.doc), sch); !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("with the schema: %v", err)
			}
		})
	}
}

func TestBuildMetadataReserved(t *testing.T) {
	for _, name := range reservedMetadata {
		if _, err := buildMetadata(map[string]any{name: 1}, ServiceType{Identifier: serviceURN}, nil, nil); !errors.Is(err, ErrInvalidMetadata) {
			t.Errorf("extra %q: %v", name, err)
		}
	}
}
