package gateway_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// pythonHeaders are what the requests library sends besides the body's
// Content-Type and the Authorization header.
var pythonHeaders = []string{"User-Agent", "python-requests/2.31.0", "Accept-Encoding", "gzip, deflate", "Accept", "*/*"}

// pyJSON is json.dumps with Python's default separators, as requests'
// json= argument encodes a body.
func pyJSON(t *testing.T, members ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i+1 < len(members); i += 2 {
		if i > 0 {
			b.WriteString(", ")
		}
		k, _ := json.Marshal(members[i])
		b.Write(k)
		b.WriteString(": ")
		switch v := members[i+1].(type) {
		case json.RawMessage:
			b.Write(v)
		case []string:
			b.WriteByte('[')
			for j, s := range v {
				if j > 0 {
					b.WriteString(", ")
				}
				e, _ := json.Marshal(s)
				b.Write(e)
			}
			b.WriteByte(']')
		default:
			e, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(e)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// pythonSeal encrypts as the Python SDK's encrypt does with jwcrypto:
// RSA-OAEP-256, A256GCM, zip DEF, cty application/json, and as kid the
// RFC 7638 thumbprint of the destination's key instead of its kid.
func pythonSeal(t *testing.T, plaintext []byte, pub *rsa.PublicKey) string {
	t.Helper()
	tp, err := (&gojose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	must(t, err)
	opts := (&gojose.EncrypterOptions{Compression: gojose.DEFLATE}).WithContentType("application/json")
	enc, err := gojose.NewEncrypter(gojose.A256GCM, gojose.Recipient{Algorithm: gojose.RSA_OAEP_256, Key: pub, KeyID: base64.RawURLEncoding.EncodeToString(tp)}, opts)
	must(t, err)
	obj, err := enc.Encrypt(plaintext)
	must(t, err)
	s, err := obj.CompactSerialize()
	must(t, err)
	return s
}

// TestPythonSDKFlow replays the requests of FIT-Connect's Python SDK,
// byte for byte where the bytes are the SDK's: a receiver activates its
// destination with PATCH, a sender creates a submission with an empty
// serviceType.name, uploads an attachment, submits, and the receiver
// lists and fetches it. Every answer is held against the spec.
func TestPythonSDKFlow(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	d := f.createDestination(newUUID(t), store.StatusCreated, "DE08311")
	receiver := f.token("subscribe:destination:"+d.ID, "manage:destination:"+d.ID)
	sender := f.token("send:region:DE08")
	py := func(method, path, token, contentType string, body []byte) reply {
		t.Helper()
		var rd *bytes.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		} else {
			rd = bytes.NewReader(nil)
		}
		return f.call(t, method, path, token, contentType, rd, pythonHeaders...)
	}

	// activate_destination
	act := decodeReply[map[string]any](t, py(http.MethodPatch, "/v1/destinations/"+d.ID, receiver, "application/json", []byte(`{"status": "active"}`)), http.StatusOK)
	if act["status"] != "active" {
		t.Fatalf("status after PATCH: %v", act["status"])
	}

	// encrypt: the destination, then its encryption key
	pd := decodeReply[map[string]any](t, py(http.MethodGet, "/v1/destinations/"+d.ID, sender, "", nil), http.StatusOK)
	kid, _ := pd["encryptionKid"].(string)
	py(http.MethodGet, "/v1/destinations/"+d.ID+"/keys/"+kid, sender, "", nil).want(t, http.StatusOK)
	pub := &keyPair(t, encKey1).Private.PublicKey

	// create_submission with one attachment
	aid := newUUID(t)
	body := pyJSON(t, "destinationId", d.ID, "announcedAttachments", []string{aid},
		"serviceType", json.RawMessage(pyJSON(t, "name", "", "identifier", serviceA)))
	if !bytes.Contains(body, []byte(`"serviceType": {"name": "", "identifier": "urn:de:fim:leika:leistung:`)) {
		t.Fatalf("not the SDK's bytes: %s", body)
	}
	c := decodeReply[created](t, py(http.MethodPost, "/v1/submissions", sender, "application/json", body), http.StatusCreated)

	// upload_attachment, then submit_submission
	py(http.MethodPut, "/v1/submissions/"+c.SubmissionID+"/attachments/"+aid, sender, "application/jose",
		[]byte(pythonSeal(t, []byte("%PDF-1.4 Antrag"), pub))).want(t, http.StatusNoContent)
	meta := pythonSeal(t, []byte(`{"$schema": "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json", "contentStructure": {"attachments": []}}`), pub)
	data := pythonSeal(t, []byte(`{"name": "Erika Mustermann"}`), pub)
	py(http.MethodPut, "/v1/submissions/"+c.SubmissionID, sender, "application/json",
		pyJSON(t, "encryptedMetadata", meta, "encryptedData", data)).want(t, http.StatusAccepted)
	f.route(t, c.SubmissionID)

	// available_submissions, then the submission itself
	list := decodeReply[struct {
		Submissions []struct {
			SubmissionID string `json:"submissionId"`
		} `json:"submissions"`
	}](t, py(http.MethodGet, "/v1/submissions", receiver, "", nil), http.StatusOK)
	if len(list.Submissions) != 1 || list.Submissions[0].SubmissionID != c.SubmissionID {
		t.Fatalf("pickup list %+v, want %s", list.Submissions, c.SubmissionID)
	}
	got := decodeReply[map[string]any](t, py(http.MethodGet, "/v1/submissions/"+c.SubmissionID, receiver, "", nil), http.StatusOK)
	if got["encryptedMetadata"] != meta || got["encryptedData"] != data {
		t.Errorf("fetched submission does not carry what was submitted: %v", got)
	}
	if st, _ := got["serviceType"].(map[string]any); st["identifier"] != serviceA {
		t.Errorf("serviceType %v", got["serviceType"])
	}
}

// TestCreateSubmissionServiceName holds serviceType.name to the spec: the
// member is required, an empty string is a name.
func TestCreateSubmissionServiceName(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	for _, tt := range []struct {
		name        string
		serviceType string
		status      int
		field       string
	}{
		{"empty name", `{"name": "", "identifier": "` + serviceA + `"}`, http.StatusCreated, ""},
		{"absent name", `{"identifier": "` + serviceA + `"}`, http.StatusBadRequest, "serviceType.name"},
		{"null name", `{"name": null, "identifier": "` + serviceA + `"}`, http.StatusBadRequest, "serviceType.name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"destinationId": %q, "announcedAttachments": [], "serviceType": %s}`, d.ID, tt.serviceType)
			r := f.callJSON(t, http.MethodPost, "/v1/submissions", sender, []byte(body))
			if tt.status == http.StatusCreated {
				r.want(t, tt.status)
				return
			}
			r.problem(t, tt.status, problem.TypeInvalidValue, tt.field)
		})
	}
}

// TestFITConnectProblemTypes checks that the cases FIT-Connect names
// answer with FIT-Connect's type URIs, the ones its SDKs branch on.
func TestFITConnectProblemTypes(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	created := f.createDestination(newUUID(t), store.StatusCreated, "DE08311")
	sender := f.token("send:region:DE08")
	const base = "https://schema.fitko.de/fit-connect/submission-api/problems/"
	body := func(id string) []byte {
		return []byte(`{"destinationId": "` + id + `", "announcedAttachments": [], "serviceType": {"name": "", "identifier": "` + serviceA + `"}}`)
	}
	f.callJSON(t, http.MethodPost, "/v1/submissions", sender, body(newUUID(t))).problem(t, 404, base+"destination-not-found", "destinationId")
	f.callJSON(t, http.MethodPost, "/v1/submissions", sender, body(created.ID)).problem(t, 422, base+"destination-state-invalid", "destinationId")
	f.call(t, http.MethodGet, "/v1/destinations/"+newUUID(t), sender, "", nil).problem(t, 404, base+"destination-not-found", "destinationId")
	f.call(t, http.MethodGet, "/v1/submissions/"+newUUID(t), f.token("subscribe:destination:"+created.ID), "", nil).problem(t, 404, base+"submission-not-found", "submissionId")
}

// TestDestinationManagement drives FIT-Connect's destination management
// endpoints with FIT-Connect's scopes and checks that each change went
// through the registry: audited, checked for conflicts, refused whole.
func TestDestinationManagement(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	creator := f.token("create:destination")
	id := newUUID(t)
	body := destinationBody(t, id, []string{"DE083110000000"}, "enc-"+id[:8], "sig-"+id[:8])
	delete(body, "destinationId")

	f.callJSON(t, http.MethodPost, "/v1/destinations", f.token("send:region:DE08"), body).problem(t, 403, problem.TypeForbidden, "scope")
	withStatus := destinationBody(t, id, []string{"DE083110000000"}, "enc-"+id[:8], "sig-"+id[:8])
	withStatus["status"] = "active"
	f.callJSON(t, http.MethodPost, "/v1/destinations", creator, withStatus).problem(t, 400, problem.TypeUnknownField, "status")
	// An id of its choosing could be one portals already send to.
	withID := destinationBody(t, id, []string{"DE083110000000"}, "enc-"+id[:8], "sig-"+id[:8])
	f.callJSON(t, http.MethodPost, "/v1/destinations", creator, withID).problem(t, 400, problem.TypeUnknownField, "destinationId")
	// A home region elsewhere would file its inbox where another
	// authority's subscriber looks, and widen its manager's area there.
	before := f.state()
	for _, home := range []string{"08315", "083110000001", "09"} {
		elsewhere := destinationBody(t, id, []string{"DE083110000000"}, "enc-"+id[:8], "sig-"+id[:8])
		delete(elsewhere, "destinationId")
		elsewhere["homeRegion"] = home
		p := f.callJSON(t, http.MethodPost, "/v1/destinations", creator, elsewhere).problem(t, 403, problem.TypeForbidden, "services[0].regions[0]")
		if !strings.Contains(p.Detail, "DE083110000000") || !strings.Contains(p.Detail, "DE"+home) {
			t.Errorf("homeRegion %s: detail %q, want the region and the home region named", home, p.Detail)
		}
	}
	f.wantUnchangedExceptClients(before)
	within := destinationBody(t, newUUID(t), []string{"DE083150000000"}, "enc-w"+id[:7], "sig-w"+id[:7])
	within["homeRegion"] = "083"
	delete(within, "destinationId")
	made := decodeReply[map[string]any](t, f.callJSON(t, http.MethodPost, "/v1/destinations", creator, within), http.StatusCreated)
	if d, err := f.st.Destination(context.Background(), made["destinationId"].(string)); err != nil || d.HomeRegion != "083" {
		t.Errorf("created %+v (%v), want homeRegion 083", d, err)
	}

	r := f.callJSON(t, http.MethodPost, "/v1/destinations", creator, body)
	made = decodeReply[map[string]any](t, r, http.StatusCreated)
	did, _ := made["destinationId"].(string)
	if made["status"] != "created" || r.header.Get("Location") != "/v1/destinations/"+did {
		t.Fatalf("created %v at %q", made, r.header.Get("Location"))
	}
	audit, err := f.st.AuditLog(context.Background(), "destination:"+did, store.Page{Limit: 10})
	must(t, err)
	if len(audit) == 0 {
		entries, _ := f.st.AuditLog(context.Background(), "", store.Page{Limit: 10})
		t.Fatalf("no audit entry for the created destination: %+v", entries)
	}

	manager := f.token("manage:destination:" + did)
	stranger := f.token("manage:destination:" + newUUID(t))
	path := "/v1/destinations/" + did
	before = f.state()
	for _, tt := range []struct {
		name, method, token, body string
		status                    int
		typ, field                string
	}{
		{"patch without manage scope", http.MethodPatch, stranger, `{"status": "active"}`, 403, problem.TypeForbidden, "scope"},
		{"patch back to created", http.MethodPatch, manager, `{"status": "created"}`, 400, problem.TypeInvalidValue, "status"},
		{"deactivate one never active", http.MethodPatch, manager, `{"status": "inactive"}`, 409, problem.TypeConflict, "status"},
		{"patch no member of PatchDestination", http.MethodPatch, manager, `{"state": "active"}`, 400, problem.TypeInvalidValue, "body"},
		{"patch nothing", http.MethodPatch, manager, `{}`, 400, problem.TypeInvalidValue, "body"},
		{"patch homeRegion", http.MethodPatch, manager, `{"homeRegion": "08"}`, 400, problem.TypeUnknownField, "homeRegion"},
		// The Gemeinde's manager may not take the service for the Kreis.
		{"widen to the Kreis", http.MethodPatch, manager, `{"services": [{"identifier": "` + serviceA + `", "regions": ["DE083110000000", "DE08311"],
			"submissionSchemas": [{"mimeType": "application/json", "schemaUri": "https://schema.fitko.de/fim/s00000096_1.0.schema.json"}]}]}`,
			403, problem.TypeForbidden, "services[0].regions[1]"},
		{"put without services", http.MethodPut, manager, `{"status": "active"}`, 400, problem.TypeInvalidValue, "contactInformation"},
		{"patch an unknown encryptionKid", http.MethodPatch, manager, `{"encryptionKid": "no-such-key"}`, 400, problem.TypeInvalidValue, "encryptionKid"},
		{"delete without manage scope", http.MethodDelete, stranger, ``, 403, problem.TypeForbidden, "scope"},
		{"key without manage scope", http.MethodPost, stranger, `{}`, 403, problem.TypeForbidden, "scope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := path
			if tt.name == "key without manage scope" {
				p += "/keys"
			}
			var rd *bytes.Reader
			if tt.body != "" {
				rd = bytes.NewReader([]byte(tt.body))
			} else {
				rd = bytes.NewReader(nil)
			}
			f.call(t, tt.method, p, tt.token, "application/json", rd).problem(t, tt.status, tt.typ, tt.field)
			f.wantUnchangedExceptClients(before)
		})
	}

	// A second destination claiming the same service and Gemeinde conflicts.
	other := destinationBody(t, newUUID(t), []string{"DE083110000000"}, "enc-o"+id[:7], "sig-o"+id[:7])
	delete(other, "destinationId")
	f.callJSON(t, http.MethodPost, "/v1/destinations", creator, other).problem(t, 409, problem.TypeConflict, "services[0].regions[0]")
	f.wantUnchangedExceptClients(before)

	// The receiver's flow: list, activate, add a key (twice), delete.
	lst := decodeReply[struct {
		TotalCount   int              `json:"totalCount"`
		Destinations []map[string]any `json:"destinations"`
	}](t, f.call(t, http.MethodGet, "/v1/destinations", manager, "", nil), http.StatusOK)
	if lst.TotalCount != 1 || lst.Destinations[0]["destinationId"] != did {
		t.Fatalf("list %+v", lst)
	}
	f.callJSON(t, http.MethodPatch, path, manager, []byte(`{"status": "active"}`)).want(t, http.StatusOK)
	key := publicJWK(t, keyPair(t, encKey2), "enc-2-"+id[:8])
	for range 2 {
		kr := f.callJSON(t, http.MethodPost, path+"/keys", manager, key)
		kr.want(t, http.StatusCreated)
		if loc := kr.header.Get("Location"); loc != path+"/keys/enc-2-"+id[:8] {
			t.Fatalf("Location %q", loc)
		}
	}
	f.call(t, http.MethodGet, path+"/keys/enc-2-"+id[:8], "", "", nil).want(t, http.StatusOK)
	f.callJSON(t, http.MethodPatch, path, manager, []byte(`{"encryptionKid": "enc-2-`+id[:8]+`"}`)).want(t, http.StatusOK)
	f.call(t, http.MethodDelete, path, manager, "", nil).want(t, http.StatusNoContent)
	d, err := f.st.Destination(context.Background(), did)
	must(t, err)
	if d.Status != store.StatusDecommissioned {
		t.Fatalf("status after DELETE: %s", d.Status)
	}
	f.callJSON(t, http.MethodPatch, path, manager, []byte(`{"status": "active"}`)).problem(t, 409, problem.TypeConflict, "status")
}

// TestDestinationWritesIgnoreUnknownMembers sends destination writes with
// members FIT-Connect's schemas do not define but allow, as its own
// CreateDestination example does with replyChannel and as a client does
// that puts back what it read: they are ignored, the rest is applied.
func TestDestinationWritesIgnoreUnknownMembers(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	id := newUUID(t)
	body := destinationBody(t, id, []string{"DE083110000000"}, "enc-"+id[:8], "sig-"+id[:8])
	delete(body, "destinationId")
	body["replyChannel"] = map[string]any{"deMail": nil}
	body["contactInformation"].(map[string]any)["fax"] = "+49 761 0"
	body["services"].([]any)[0].(map[string]any)["description"] = "Gewerbeanzeige"
	made := decodeReply[map[string]any](t, f.callJSON(t, http.MethodPost, "/v1/destinations", f.token("create:destination"), body), http.StatusCreated)
	did, _ := made["destinationId"].(string)
	if _, ok := made["replyChannel"]; ok {
		t.Errorf("the unknown member was kept: %v", made)
	}
	if c, _ := made["contactInformation"].(map[string]any); c["fax"] != nil || c["legalName"] == nil {
		t.Errorf("contactInformation %v", c)
	}

	manager := f.token("manage:destination:" + did)
	path := "/v1/destinations/" + did
	read := decodeReply[map[string]any](t, f.call(t, http.MethodGet, path, manager, "", nil), http.StatusOK)
	read["contactInformation"].(map[string]any)["unit"] = "Gewerbeamt"
	put := decodeReply[map[string]any](t, f.callJSON(t, http.MethodPut, path, manager, read), http.StatusOK)
	if put["contactInformation"].(map[string]any)["unit"] != "Gewerbeamt" || put["destinationId"] != did {
		t.Errorf("PUT of the destination as read: %v", put)
	}
	patched := decodeReply[map[string]any](t, f.callJSON(t, http.MethodPatch, path, manager, []byte(`{"status": "active", "comment": "go live"}`)), http.StatusOK)
	if patched["status"] != "active" {
		t.Errorf("PATCH: %v", patched)
	}
	d, err := f.st.Destination(context.Background(), did)
	must(t, err)
	if d.Status != store.StatusActive || d.Contact.Unit != "Gewerbeamt" || d.CallbackSecret != strings.Repeat("s", 40) {
		t.Errorf("stored %s, unit %q, callback secret %q", d.Status, d.Contact.Unit, d.CallbackSecret)
	}
	// A new callback URL needs its secret.
	f.callJSON(t, http.MethodPatch, path, manager, []byte(`{"callback": {"url": "https://elsewhere.example.org/cb"}}`)).
		problem(t, 400, problem.TypeInvalidValue, "callback.secret")
	// A callback to an address Amtsbote does not post to is refused when given.
	f.callJSON(t, http.MethodPatch, path, manager, []byte(`{"callback": {"url": "https://192.168.178.1/cb", "secret": "`+strings.Repeat("t", 32)+`"}}`)).
		problem(t, 400, problem.TypeInvalidValue, "callback.url")
	// One stored before, when its network was allowed and such a URL taken, stays through a change.
	_, err = f.st.UpdateDestination(context.Background(), "test", did, func(d *store.Destination) error {
		d.CallbackURL = "https://10.20.0.5/cb/" + strings.Repeat("a", store.MaxCallbackURL)
		return nil
	})
	must(t, err)
	read = decodeReply[map[string]any](t, f.call(t, http.MethodGet, path, manager, "", nil), http.StatusOK)
	read["contactInformation"].(map[string]any)["unit"] = "Ordnungsamt"
	decodeReply[map[string]any](t, f.callJSON(t, http.MethodPut, path, manager, read), http.StatusOK)
}

// TestImportsAnswerRevision checks that every reference import, the
// postcodes too, answers the registry revision that announced it.
func TestImportsAnswerRevision(t *testing.T) {
	e := newEnv(t)
	admin := e.adminToken()
	last := 0
	for _, imp := range []struct{ path, ct, body string }{
		{"/admin/v1/import/gv100ad", "text/plain", strings.Join(gv100adLines(t, 20), "\n") + "\n"},
		{"/admin/v1/import/leika", "text/csv", "leika_key,name\n99108008000000,Gewerbeanzeige\n"},
		{"/admin/v1/import/plz", "text/csv", "plz,ags,ars,name\n79098,08311000,083110000000,Freiburg im Breisgau\n"},
	} {
		resp := e.do(http.MethodPost, imp.path, admin, imp.ct, []byte(imp.body))
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", imp.path, resp.StatusCode, body)
		}
		rev, err := strconv.Atoi(resp.Header.Get("Amtsbote-Registry-Revision"))
		if err != nil || rev <= last {
			t.Errorf("%s: Amtsbote-Registry-Revision %q, want a revision after %d", imp.path, resp.Header.Get("Amtsbote-Registry-Revision"), last)
		}
		last = rev
	}
}

// TestQueryParseErrors sends query strings Go's parser rejects in part:
// each is a 400 naming what is wrong, never an answer as if the
// parameter were missing.
func TestQueryParseErrors(t *testing.T) {
	e := newFlowEnv(t, flowtest.OpenSQLite(t)).env
	d := e.createDestination(newUUID(t), store.StatusActive, "DE08311")
	receiver := e.token("subscribe:destination:" + d.ID)
	admin := e.adminToken()
	many := "leikaKey=" + leikaA + "&ars=083110000000" + strings.Repeat("&x=1", maxQueryParams-1)
	for _, tt := range []struct {
		name, path, token, field, detail string
	}{
		{"more than 10,000 parameters", "/v2/routes?" + many, "", "query", "10001 parameters"},
		{"a raw semicolon", "/v2/routes?leikaKey=" + leikaA + ";ars=083110000000", "", "leikaKey", "';'"},
		{"a bad escape", "/v2/routes?leikaKey=" + leikaA + "%zz&ars=083110000000", "", "leikaKey", "URL-encoded"},
		{"a bad escape in the area search", "/v1/areas?areaSearchexpression=K%C3%B6ln%", "", "areaSearchexpression", "URL-encoded"},
		{"a semicolon in the pickup list", "/v1/submissions?destinationId=" + d.ID + ";limit=1", receiver, "destinationId", "';'"},
		{"a bad escape in a page", "/v1/submissions?limit=1%G0", receiver, "limit", "URL-encoded"},
		{"a bad escape in coverage", "/admin/v1/coverage?leikaKey=%", admin, "leikaKey", "URL-encoded"},
		{"a bad escape in the audit log", "/admin/v1/audit?object=destination%3", admin, "object", "URL-encoded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := wantProblem(t, e.do(http.MethodGet, tt.path, tt.token, "", nil), http.StatusBadRequest, problem.TypeInvalidRequest, tt.field)
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail %q does not say %q", p.Detail, tt.detail)
			}
		})
	}
}

// maxQueryParams is how many parameters Go's parser accepts.
const maxQueryParams = 10000

// TestAreaSearchTermTooLong sends a search term of 49,999 bytes, where
// SQLite's LIKE gives up: a 400 naming the parameter.
func TestAreaSearchTermTooLong(t *testing.T) {
	e := newEnv(t)
	for _, n := range []int{49999, 1 << 20 / 2} {
		p := wantProblem(t, e.do(http.MethodGet, "/v2/areas?areaSearchexpression="+strings.Repeat("a", n), "", "", nil),
			http.StatusBadRequest, problem.TypeInvalidValue, "areaSearchexpression")
		if !strings.Contains(p.Detail, "longer than") {
			t.Errorf("detail %q", p.Detail)
		}
	}
}

// TestRouteSignatureSingleFlight sends forty concurrent first requests
// for one destination and service: they share one signature.
func TestRouteSignatureSingleFlight(t *testing.T) {
	e := newEnv(t)
	admin := e.adminToken()
	e.activeDestination(admin, newUUID(t), time.Time{}, "DE08311")
	const n = 40
	sigs := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := e.srv.Client().Get(e.srv.URL + "/v2/routes?leikaKey=" + leikaA + "&ars=083110000000")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var rr struct {
				Routes []struct {
					DestinationSignature string `json:"destinationSignature"`
				} `json:"routes"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&rr); err != nil || len(rr.Routes) != 1 {
				t.Errorf("request %d: %d routes, %v", i, len(rr.Routes), err)
				return
			}
			sigs[i] = rr.Routes[0].DestinationSignature
		})
	}
	close(start)
	wg.Wait()
	distinct := map[string]bool{}
	for _, s := range sigs {
		distinct[s] = true
	}
	if len(distinct) != 1 {
		t.Errorf("%d concurrent first requests got %d signatures, want 1", n, len(distinct))
	}
}
