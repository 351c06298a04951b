package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway"
)

const newDestID = "7881dba9-4055-4854-8b6d-11ea5b7f3047"

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// keyRuleCases break one key rule each, on the encryption key.
func keyRuleCases(t *testing.T) []struct {
	name  string
	mut   func(k map[string]any)
	field string
	// addField is the field the key endpoint names, where it differs: it
	// takes the purpose from key_ops, so a wrong key_ops reads as a
	// signing key with the wrong alg.
	addField string
} {
	other := keyPair(t, sigKey1)
	small := rsa2048(t)
	return []struct {
		name     string
		mut      func(k map[string]any)
		field    string
		addField string
	}{
		{"kty not RSA", func(k map[string]any) { k["kty"] = "EC" }, "kty", ""},
		{"private material", func(k map[string]any) { k["d"] = b64([]byte("secret")) }, "d", ""},
		{"modulus under 4096 bits", func(k map[string]any) { k["n"] = b64(small.N.Bytes()) }, "n", ""},
		{"exponent not AQAB", func(k map[string]any) { k["e"] = b64(big.NewInt(65539).Bytes()) }, "e", ""},
		{"key_ops for signing", func(k map[string]any) { k["key_ops"] = []string{"verify"} }, "key_ops", "alg"},
		{"key_ops missing", func(k map[string]any) { delete(k, "key_ops") }, "key_ops", ""},
		{"alg for signing", func(k map[string]any) { k["alg"] = "PS512" }, "alg", ""},
		{"use for signing", func(k map[string]any) { k["use"] = "sig" }, "use", ""},
		{"kid too short", func(k map[string]any) { k["kid"] = "short" }, "kid", ""},
		{"kid too long", func(k map[string]any) { k["kid"] = strings.Repeat("k", 65) }, "kid", ""},
		{"x5c missing", func(k map[string]any) { delete(k, "x5c") }, "x5c", ""},
		{"x5c not DER", func(k map[string]any) {
			k["x5c"] = []string{base64.StdEncoding.EncodeToString([]byte("no certificate"))}
		}, "x5c", ""},
		{"x5c of another key", func(k map[string]any) {
			k["x5c"] = []string{base64.StdEncoding.EncodeToString(other.Public.Certificates[0].Raw)}
		}, "x5c", ""},
	}
}

func TestAdminCreateDestinationBadInput(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testAdminCreateDestinationBadInput(t, b) })
	}
}

func testAdminCreateDestinationBadInput(t *testing.T, b flowtest.Backend) {
	e := newEnvOn(t, b.Open(t), func(c *gateway.Config) { c.MaxBody = 64 << 10 })
	admin := e.adminToken()
	existing := e.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08315")

	valid := func() map[string]any {
		return destinationBody(t, newDestID, []string{"DE08311"}, "enc-new-0001", "sig-new-0001")
	}
	with := func(mut func(b map[string]any)) []byte {
		b := valid()
		mut(b)
		raw, err := json.Marshal(b)
		must(t, err)
		return raw
	}
	service := func(b map[string]any) map[string]any { return b["services"].([]any)[0].(map[string]any) }

	type tc struct {
		name        string
		body        []byte
		contentType string
		status      int
		typ         string
		field       string
	}
	tests := []tc{
		{name: "malformed JSON", body: []byte(`{"contactInformation": {`), status: 400, typ: problem.TypeMalformedJSON, field: "body"},
		{name: "not an object", body: []byte(`["services"]`), status: 400, typ: problem.TypeMalformedJSON, field: "body"},
		{name: "trailing data", body: append(with(func(map[string]any) {}), []byte(`{}`)...), status: 400, typ: problem.TypeMalformedJSON, field: "body"},
		{name: "empty body", body: []byte(``), status: 400, typ: problem.TypeMalformedJSON, field: "body"},
		{name: "wrong type", body: with(func(b map[string]any) { b["metadataVersions"] = "1.0.0" }), status: 400, typ: problem.TypeMalformedJSON, field: "metadataVersions"},
		{name: "unknown field", body: with(func(b map[string]any) { b["replyChannel"] = map[string]any{"deMail": nil} }), status: 400, typ: problem.TypeUnknownField, field: "replyChannel"},
		{name: "unknown nested field", body: with(func(b map[string]any) { service(b)["region"] = "DE08" }), status: 400, typ: problem.TypeUnknownField, field: "services[0].region"},
		{name: "field in other case", body: with(func(b map[string]any) { b["Status"] = "active" }), status: 400, typ: problem.TypeUnknownField, field: "Status"},
		{name: "missing required", body: with(func(b map[string]any) { delete(b, "signingPublicKey") }), status: 400, typ: problem.TypeInvalidValue, field: "signingPublicKey"},
		{name: "bad destination id", body: with(func(b map[string]any) { b["destinationId"] = "freiburg" }), status: 400, typ: problem.TypeInvalidValue, field: "destinationId"},
		{name: "region not an ARS level", body: with(func(b map[string]any) { service(b)["regions"] = []string{"DE08", "DE0831"} }), status: 400, typ: problem.TypeInvalidValue, field: "services[0].regions[1]"},
		{name: "region without DE", body: with(func(b map[string]any) { service(b)["regions"] = []string{"08311"} }), status: 400, typ: problem.TypeInvalidValue, field: "services[0].regions[0]"},
		{name: "region twice", body: with(func(b map[string]any) { service(b)["regions"] = []string{"DE08", "DE08"} }), status: 400, typ: problem.TypeInvalidValue, field: "services[0].regions[1]"},
		{name: "no regions", body: with(func(b map[string]any) { service(b)["regions"] = []string{} }), status: 400, typ: problem.TypeInvalidValue, field: "services[0].regions"},
		{name: "service not a URN", body: with(func(b map[string]any) { service(b)["identifier"] = "99108008000000" }), status: 400, typ: problem.TypeInvalidValue, field: "services[0].identifier"},
		{name: "LeiKa URN of 13 digits", body: with(func(b map[string]any) { service(b)["identifier"] = "urn:de:fim:leika:leistung:9910800800000" }), status: 400, typ: problem.TypeInvalidValue, field: "services[0].identifier"},
		{name: "no services", body: with(func(b map[string]any) { b["services"] = []any{} }), status: 400, typ: problem.TypeInvalidValue, field: "services"},
		{name: "schema mime type", body: with(func(b map[string]any) {
			service(b)["submissionSchemas"] = []any{map[string]any{"mimeType": "text/plain", "schemaUri": "https://x.example/s"}}
		}), status: 400, typ: problem.TypeInvalidValue, field: "services[0].submissionSchemas[0].mimeType"},
		{name: "metadata version not semver", body: with(func(b map[string]any) { b["metadataVersions"] = []string{"1.0"} }), status: 400, typ: problem.TypeInvalidValue, field: "metadataVersions[0]"},
		{name: "contact email", body: with(func(b map[string]any) { b["contactInformation"].(map[string]any)["email"] = "poststelle" }), status: 400, typ: problem.TypeInvalidValue, field: "contactInformation.email"},
		{name: "callback not https", body: with(func(b map[string]any) { b["callback"].(map[string]any)["url"] = "http://fachverfahren.example.org/cb" }), status: 400, typ: problem.TypeInvalidValue, field: "callback.url"},
		{name: "callback to a private address", body: with(func(b map[string]any) { b["callback"].(map[string]any)["url"] = "https://10.1.2.3/cb" }), status: 400, typ: problem.TypeInvalidValue, field: "callback.url"},
		{name: "callback scheme in upper case", body: with(func(b map[string]any) { b["callback"].(map[string]any)["url"] = "HTTPS://fachverfahren.example.org/cb" }), status: 400, typ: problem.TypeInvalidValue, field: "callback.url"},
		{name: "callback port out of range", body: with(func(b map[string]any) {
			b["callback"].(map[string]any)["url"] = "https://fachverfahren.example.org:65536/cb"
		}), status: 400, typ: problem.TypeInvalidValue, field: "callback.url"},
		{name: "callback to IPv6 loopback", body: with(func(b map[string]any) { b["callback"].(map[string]any)["url"] = "https://[::1]:4222/" }), status: 400, typ: problem.TypeInvalidValue, field: "callback.url"},
		{name: "callback url too long", body: with(func(b map[string]any) {
			b["callback"].(map[string]any)["url"] = "https://fachverfahren.example.org/" + strings.Repeat("a", 2048)
		}), status: 400, typ: problem.TypeInvalidValue, field: "callback.url"},
		{name: "callback secret short", body: with(func(b map[string]any) { b["callback"].(map[string]any)["secret"] = "0123456789" }), status: 400, typ: problem.TypeInvalidValue, field: "callback.secret"},
		{name: "callback secret long", body: with(func(b map[string]any) { b["callback"].(map[string]any)["secret"] = strings.Repeat("x", 513) }), status: 400, typ: problem.TypeInvalidValue, field: "callback.secret"},
		{name: "encryptionKid mismatch", body: with(func(b map[string]any) { b["encryptionKid"] = "another-kid" }), status: 400, typ: problem.TypeInvalidValue, field: "encryptionKid"},
		{name: "status unknown", body: with(func(b map[string]any) { b["status"] = "open" }), status: 400, typ: problem.TypeInvalidValue, field: "status"},
		{name: "home region", body: with(func(b map[string]any) { b["homeRegion"] = "DE08" }), status: 400, typ: problem.TypeInvalidValue, field: "homeRegion"},
		{name: "signing key given as encryption key", body: with(func(b map[string]any) {
			b["encryptionPublicKey"] = publicJWK(t, keyPair(t, sigKey1), "enc-new-0001")
		}), status: 400, typ: problem.TypeInvalidKey, field: "encryptionPublicKey.key_ops"},
		{name: "signing key breaks a rule", body: with(func(b map[string]any) { b["signingPublicKey"].(map[string]any)["alg"] = "RS256" }), status: 400, typ: problem.TypeInvalidKey, field: "signingPublicKey.alg"},
		{name: "duplicate destination id", body: with(func(b map[string]any) { b["destinationId"] = existing.ID }), status: 409, typ: problem.TypeConflict, field: "destinationId"},
		{name: "body over the limit", body: with(func(b map[string]any) {
			b["contactInformation"].(map[string]any)["unit"] = strings.Repeat("x", 70<<10)
		}), status: 413, typ: problem.TypeBodyTooLarge},
		{name: "wrong content type", body: with(func(map[string]any) {}), contentType: "text/plain", status: 415, typ: problem.TypeUnsupportedMediaType, field: "Content-Type"},
		{name: "no content type", body: with(func(map[string]any) {}), contentType: "-", status: 415, typ: problem.TypeUnsupportedMediaType, field: "Content-Type"},
	}
	for _, kr := range keyRuleCases(t) {
		tests = append(tests, tc{
			name: "key rule: " + kr.name,
			body: with(func(b map[string]any) {
				k := b["encryptionPublicKey"].(map[string]any)
				kr.mut(k)
				if kid, ok := k["kid"].(string); ok {
					b["encryptionKid"] = kid
				}
			}),
			status: 400, typ: problem.TypeInvalidKey, field: "encryptionPublicKey." + kr.field,
		})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.state()
			ct := "application/json"
			switch tt.contentType {
			case "-":
				ct = ""
			case "":
			default:
				ct = tt.contentType
			}
			resp := e.do(http.MethodPost, "/admin/v1/destinations", admin, ct, tt.body)
			wantProblem(t, resp, tt.status, tt.typ, tt.field)
			e.wantUnchanged(before)
		})
	}

	t.Run("valid body is accepted", func(t *testing.T) {
		resp := e.doJSON(http.MethodPost, "/admin/v1/destinations", admin, valid())
		got := decode[map[string]any](t, resp, http.StatusCreated)
		if resp.Header.Get("Location") != "/admin/v1/destinations/"+newDestID || got["homeRegion"] != "08311" || got["status"] != "created" {
			t.Errorf("created %v, Location %q", got, resp.Header.Get("Location"))
		}
	})
}

func TestAdminRequiresAdminScope(t *testing.T) {
	e := newEnv(t)
	tok := e.token("manage:destination:" + newDestID)
	before := e.state()
	resp := e.doJSON(http.MethodPost, "/admin/v1/destinations", tok, destinationBody(t, newDestID, []string{"DE08"}, "enc-new-0001", "sig-new-0001"))
	wantProblem(t, resp, http.StatusForbidden, problem.TypeForbidden, "scope")
	e.wantUnchanged(before)
	wantProblem(t, e.do(http.MethodGet, "/admin/v1/clients", "", "", nil), http.StatusUnauthorized, problem.TypeUnauthorized, "")
}

func TestAdminDestinationLifecycle(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testAdminDestinationLifecycle(t, b) })
	}
}

func testAdminDestinationLifecycle(t *testing.T, b flowtest.Backend) {
	e := newEnvOn(t, b.Open(t))
	admin := e.adminToken()
	adminID := e.tokenSubject(admin)
	path := "/admin/v1/destinations/" + newDestID

	decode[map[string]any](t, e.doJSON(http.MethodPost, "/admin/v1/destinations", admin,
		destinationBody(t, newDestID, []string{"DE08311", "DE08315"}, "enc-new-0001", "sig-new-0001")), http.StatusCreated)

	got := decode[map[string]any](t, e.do(http.MethodGet, path, admin, "", nil), http.StatusOK)
	if got["homeRegion"] != "083" || got["signingKid"] != "sig-new-0001" || len(got["keys"].([]any)) != 2 {
		t.Errorf("admin view %v", got)
	}
	if strings.Contains(mustJSON(t, got), strings.Repeat("s", 40)) {
		t.Error("the admin view shows the callback secret")
	}

	got = decode[map[string]any](t, e.do(http.MethodPost, path+"/activate", admin, "", nil), http.StatusOK)
	if got["status"] != "active" {
		t.Errorf("after activate: %v", got["status"])
	}
	got = decode[map[string]any](t, e.doJSON(http.MethodPatch, path, admin, map[string]any{
		"contactInformation": map[string]any{"legalName": "Landratsamt", "address": "Stadtstr. 2", "phone": "+49 761 2187", "email": "info@lkbh.de"},
	}), http.StatusOK)
	if got["contactInformation"].(map[string]any)["legalName"] != "Landratsamt" || got["status"] != "active" {
		t.Errorf("after patch: %v", got)
	}

	put := destinationBody(t, newDestID, []string{"DE08"}, "enc-new-0001", "")
	for _, k := range []string{"destinationId", "encryptionPublicKey", "signingPublicKey", "callback"} {
		delete(put, k)
	}
	put["status"] = "inactive"
	got = decode[map[string]any](t, e.doJSON(http.MethodPut, path, admin, put), http.StatusOK)
	if got["status"] != "inactive" || got["callback"] != nil {
		t.Errorf("after put: %v", got)
	}

	t.Run("encryptionKid must name an encryption key", func(t *testing.T) {
		before := e.state()
		wantProblem(t, e.doJSON(http.MethodPatch, path, admin, map[string]any{"encryptionKid": "sig-new-0001"}),
			http.StatusBadRequest, problem.TypeInvalidValue, "encryptionKid")
		wantProblem(t, e.doJSON(http.MethodPatch, path, admin, map[string]any{"encryptionKid": "nowhere-0001"}),
			http.StatusBadRequest, problem.TypeInvalidValue, "encryptionKid")
		e.wantUnchanged(before)
	})
	t.Run("patch refuses unknown fields and created", func(t *testing.T) {
		before := e.state()
		wantProblem(t, e.doJSON(http.MethodPatch, path, admin, map[string]any{"state": "active"}),
			http.StatusBadRequest, problem.TypeUnknownField, "state")
		wantProblem(t, e.doJSON(http.MethodPatch, path, admin, map[string]any{"status": "created"}),
			http.StatusBadRequest, problem.TypeInvalidValue, "status")
		e.wantUnchanged(before)
	})

	decode[map[string]any](t, e.doJSON(http.MethodPatch, path, admin, map[string]any{"status": "decommissioned"}), http.StatusOK)
	t.Run("decommissioned is final", func(t *testing.T) {
		before := e.state()
		wantProblem(t, e.do(http.MethodPost, path+"/activate", admin, "", nil), http.StatusConflict, problem.TypeConflict, "status")
		e.wantUnchanged(before)
	})
	t.Run("unknown destination", func(t *testing.T) {
		before := e.state()
		wantProblem(t, e.do(http.MethodPost, "/admin/v1/destinations/2f59b8c6-3206-4734-aa21-a7b2a4d92f7a/deactivate", admin, "", nil),
			http.StatusNotFound, problem.TypeDestinationNotFound, "destinationId")
		e.wantUnchanged(before)
	})

	list := decode[struct {
		Count        int              `json:"count"`
		TotalCount   int              `json:"totalCount"`
		Destinations []map[string]any `json:"destinations"`
	}](t, e.do(http.MethodGet, "/admin/v1/destinations?limit=1", admin, "", nil), http.StatusOK)
	if list.Count != 1 || list.TotalCount != 1 || list.Destinations[0]["destinationId"] != newDestID {
		t.Errorf("list %+v", list)
	}
	wantProblem(t, e.do(http.MethodGet, "/admin/v1/destinations?limit=501", admin, "", nil), http.StatusBadRequest, problem.TypeInvalidRequest, "limit")

	audit := decode[struct {
		Entries []store.AuditEntry `json:"entries"`
	}](t, e.do(http.MethodGet, "/admin/v1/audit?object=destination:"+newDestID, admin, "", nil), http.StatusOK)
	var actions []string
	for _, a := range audit.Entries {
		actions = append(actions, a.Action)
		if a.Actor != adminID {
			t.Errorf("audit entry %s by %q, want the token subject %q", a.Action, a.Actor, adminID)
		}
	}
	if len(audit.Entries) != 5 {
		t.Errorf("audit actions %v, want create, activate, patch, put, decommission", actions)
	}
}

func TestKeyRoll(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			const grace = 48 * time.Hour
			e := newEnvOn(t, b.Open(t), func(c *gateway.Config) { c.KeyGrace = grace })
			admin := e.adminToken()
			d := e.createDestination(newDestID, "active", "DE08311")
			keyPath := func(kid string) string { return "/v1/destinations/" + d.ID + "/keys/" + kid }

			// An added key does not become current.
			added := publicJWK(t, keyPair(t, encKey2), "enc-added-01")
			resp := e.doJSON(http.MethodPost, "/admin/v1/destinations/"+d.ID+"/keys", admin, added)
			got := decode[map[string]any](t, resp, http.StatusCreated)
			if got["encryptionKid"] != d.EncryptionKID || resp.Header.Get("Location") != keyPath("enc-added-01") {
				t.Fatalf("after add: encryptionKid %v, Location %q", got["encryptionKid"], resp.Header.Get("Location"))
			}

			rolled := publicJWK(t, keyPair(t, encKey2), "enc-rolled-01")
			rolled["roll"] = true
			got = decode[map[string]any](t, e.doJSON(http.MethodPost, "/admin/v1/destinations/"+d.ID+"/keys", admin, rolled), http.StatusCreated)
			if got["encryptionKid"] != "enc-rolled-01" {
				t.Fatalf("after roll: encryptionKid %v", got["encryptionKid"])
			}
			sender := e.token("send:region:DE08")
			pub := decode[map[string]any](t, e.do(http.MethodGet, "/v1/destinations/"+d.ID, sender, "", nil), http.StatusOK)
			if pub["encryptionKid"] != "enc-rolled-01" {
				t.Errorf("senders see encryptionKid %v", pub["encryptionKid"])
			}

			e.clock.Advance(grace - time.Minute)
			for _, kid := range []string{d.EncryptionKID, "enc-rolled-01", "enc-added-01"} {
				if resp := e.do(http.MethodGet, keyPath(kid), "", "", nil); resp.StatusCode != http.StatusOK {
					t.Errorf("within the grace period key %s: %d", kid, resp.StatusCode)
				}
			}
			e.clock.Advance(2 * time.Minute)
			wantProblem(t, e.do(http.MethodGet, keyPath(d.EncryptionKID), "", "", nil), http.StatusNotFound, problem.TypeKeyNotFound, "keyId")
			for _, kid := range []string{"enc-rolled-01", "enc-added-01"} {
				if resp := e.do(http.MethodGet, keyPath(kid), "", "", nil); resp.StatusCode != http.StatusOK {
					t.Errorf("after the grace period key %s: %d", kid, resp.StatusCode)
				}
			}

			t.Run("bad keys change nothing", func(t *testing.T) {
				admin := e.adminToken()
				for _, kr := range keyRuleCases(t) {
					t.Run(kr.name, func(t *testing.T) {
						k := publicJWK(t, keyPair(t, encKey2), "enc-bad-0001")
						kr.mut(k)
						k["roll"] = true
						before := e.state()
						resp := e.doJSON(http.MethodPost, "/admin/v1/destinations/"+d.ID+"/keys", admin, k)
						field := kr.field
						if kr.addField != "" {
							field = kr.addField
						}
						wantProblem(t, resp, http.StatusBadRequest, problem.TypeInvalidKey, field)
						e.wantUnchanged(before)
					})
				}
				before := e.state()
				wantProblem(t, e.doJSON(http.MethodPost, "/admin/v1/destinations/"+d.ID+"/keys", admin, added),
					http.StatusConflict, problem.TypeConflict, "kid")
				wantProblem(t, e.doJSON(http.MethodPost, "/admin/v1/destinations/"+d.ID+"/keys", admin, map[string]any{"roll": "yes"}),
					http.StatusBadRequest, problem.TypeInvalidValue, "roll")
				e.wantUnchanged(before)
			})
		})
	}
}

func TestAdminClients(t *testing.T) {
	e := newEnv(t)
	admin := e.adminToken()
	resp := e.doJSON(http.MethodPost, "/admin/v1/clients", admin, map[string]any{
		"name": "service-bw", "scopes": []string{"send:region:DE08", "send:region:DE09+send:service:" + serviceA},
	})
	created := decode[map[string]any](t, resp, http.StatusCreated)
	id, secret := created["clientId"].(string), created["clientSecret"].(string)
	if id == "" || len(secret) < 40 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("created %v", created)
	}
	// The new credentials work.
	tok := decode[map[string]any](t, e.postForm("/token", map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret},
	}), http.StatusOK)
	if tok["scope"] != "send:region:DE08 send:region:DE09+send:service:"+serviceA {
		t.Errorf("token scope %v", tok["scope"])
	}

	listed := e.do(http.MethodGet, "/admin/v1/clients", admin, "", nil)
	// Nothing of the operator API stays in a cache; no answer is sniffed.
	if cc, ns := listed.Header.Get("Cache-Control"), listed.Header.Get("X-Content-Type-Options"); cc != "no-store" || ns != "nosniff" {
		t.Errorf("client list Cache-Control %q, X-Content-Type-Options %q; want no-store, nosniff", cc, ns)
	}
	info := e.do(http.MethodGet, "/v1/info", "", "", nil)
	readAll(t, info)
	if ns := info.Header.Get("X-Content-Type-Options"); ns != "nosniff" {
		t.Errorf("/v1/info X-Content-Type-Options %q, want nosniff", ns)
	}
	raw := string(readAll(t, listed))
	if !strings.Contains(raw, id) || strings.Contains(raw, secret) || strings.Contains(strings.ToLower(raw), "hash") {
		t.Errorf("client list %s", raw)
	}
	one := decode[map[string]any](t, e.do(http.MethodGet, "/admin/v1/clients/"+id, admin, "", nil), http.StatusOK)
	if one["name"] != "service-bw" {
		t.Errorf("client %v", one)
	}
	t.Run("pages", func(t *testing.T) {
		type page struct {
			Count, Offset, TotalCount int
			Clients                   []struct{ ClientID string }
		}
		all := decode[page](t, e.do(http.MethodGet, "/admin/v1/clients", admin, "", nil), http.StatusOK)
		if all.TotalCount < 2 || all.Count != all.TotalCount || len(all.Clients) != all.Count {
			t.Fatalf("all clients: %+v", all)
		}
		second := decode[page](t, e.do(http.MethodGet, "/admin/v1/clients?limit=1&offset=1", admin, "", nil), http.StatusOK)
		if second.Count != 1 || second.Offset != 1 || second.TotalCount != all.TotalCount || second.Clients[0].ClientID != all.Clients[1].ClientID {
			t.Errorf("second page: %+v, all %+v", second, all)
		}
		past := decode[page](t, e.do(http.MethodGet, fmt.Sprintf("/admin/v1/clients?offset=%d", all.TotalCount+5), admin, "", nil), http.StatusOK)
		if past.Count != 0 || past.Clients == nil || past.TotalCount != all.TotalCount {
			t.Errorf("past the end: %+v", past)
		}
		wantProblem(t, e.do(http.MethodGet, "/admin/v1/clients?limit=0", admin, "", nil), http.StatusBadRequest, problem.TypeInvalidRequest, "limit")
		audit := decode[map[string]any](t, e.do(http.MethodGet, "/admin/v1/audit?limit=1&object=client:"+id, admin, "", nil), http.StatusOK)
		if audit["count"] != 1.0 || audit["totalCount"] != 1.0 {
			t.Errorf("audit page: %v", audit)
		}
	})

	tests := []struct {
		name  string
		body  any
		typ   string
		field string
	}{
		{"scope outside the grammar", map[string]any{"name": "x", "scopes": []string{"send:region:DE08", "send:region:DE0831"}}, problem.TypeInvalidValue, "scopes[1]"},
		{"no scopes", map[string]any{"name": "x", "scopes": []string{}}, problem.TypeInvalidValue, "scopes"},
		{"no name", map[string]any{"scopes": []string{"send:region:DE08"}}, problem.TypeInvalidValue, "name"},
		{"unknown field", map[string]any{"name": "x", "scopes": []string{"send:region:DE08"}, "secret": "mine"}, problem.TypeUnknownField, "secret"},
		{"bad client id", map[string]any{"clientId": "a b", "name": "x", "scopes": []string{"send:region:DE08"}}, problem.TypeInvalidValue, "clientId"},
		{"destination that does not exist", map[string]any{"name": "x", "scopes": []string{"send:region:DE08", "subscribe:destination:" + uuid.NewString()}}, problem.TypeInvalidValue, "scopes[1]"},
		{"managed destination that does not exist", map[string]any{"name": "x", "scopes": []string{"manage:destination:" + uuid.NewString()}}, problem.TypeInvalidValue, "scopes[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.state()
			wantProblem(t, e.doJSON(http.MethodPost, "/admin/v1/clients", admin, tt.body), http.StatusBadRequest, tt.typ, tt.field)
			e.wantUnchanged(before)
		})
	}
	t.Run("destination that exists", func(t *testing.T) {
		d := e.createDestination(uuid.NewString(), store.StatusActive, "DE08")
		created := decode[map[string]any](t, e.doJSON(http.MethodPost, "/admin/v1/clients", admin, map[string]any{
			"name": "back office", "scopes": []string{"subscribe:destination:" + d.ID, "manage:destination:" + strings.ToUpper(d.ID)},
		}), http.StatusCreated)
		if created["clientId"] == "" {
			t.Fatalf("created %v", created)
		}
	})
	t.Run("duplicate client id", func(t *testing.T) {
		before := e.state()
		wantProblem(t, e.doJSON(http.MethodPost, "/admin/v1/clients", admin, map[string]any{"clientId": id, "name": "x", "scopes": []string{"send:region:DE08"}}),
			http.StatusConflict, problem.TypeConflict, "clientId")
		e.wantUnchanged(before)
	})

	grant := func(secret string) int {
		resp := e.postForm("/token", map[string][]string{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
		readAll(t, resp)
		return resp.StatusCode
	}
	tokenOf := func(secret string) string {
		return decode[map[string]any](t, e.postForm("/token", map[string][]string{
			"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret},
		}), http.StatusOK)["access_token"].(string)
	}
	useToken := func(token string) int {
		resp := e.do(http.MethodGet, "/v1/destinations/7881dba9-4055-4854-8b6d-11ea5b7f3047", token, "", nil)
		readAll(t, resp)
		return resp.StatusCode
	}
	t.Run("disable and enable", func(t *testing.T) {
		held := tokenOf(secret)
		use := func() int { return useToken(held) }
		if code := use(); code != http.StatusNotFound {
			t.Fatalf("the held token: %d, want 404 for an unknown destination", code)
		}
		got := decode[map[string]any](t, e.doJSON(http.MethodPatch, "/admin/v1/clients/"+id, admin, map[string]any{"disabled": true}), http.StatusOK)
		if got["disabled"] != true {
			t.Fatalf("patched %v", got)
		}
		if code := grant(secret); code != http.StatusUnauthorized {
			t.Errorf("token of a disabled client: %d, want 401", code)
		}
		// A token it holds stops working within seconds, not at its expiry.
		e.clock.Advance(6 * time.Second)
		if code := use(); code != http.StatusUnauthorized {
			t.Errorf("a disabled client's held token: %d, want 401", code)
		}
		decode[map[string]any](t, e.doJSON(http.MethodPatch, "/admin/v1/clients/"+id, admin, map[string]any{"disabled": false}), http.StatusOK)
		if code := grant(secret); code != http.StatusOK {
			t.Errorf("token of the client enabled again: %d, want 200", code)
		}
		e.clock.Advance(6 * time.Second)
		if code := use(); code != http.StatusNotFound {
			t.Errorf("the held token once enabled again: %d, want 404", code)
		}
	})
	t.Run("rotate the secret", func(t *testing.T) {
		old := tokenOf(secret)
		if code := useToken(old); code != http.StatusNotFound {
			t.Fatalf("a token before the change: %d, want 404 for an unknown destination", code)
		}
		resp := e.do(http.MethodPost, "/admin/v1/clients/"+id+"/secret", admin, "", nil)
		rotated := decode[map[string]any](t, resp, http.StatusOK)
		fresh, _ := rotated["clientSecret"].(string)
		if len(fresh) < 40 || fresh == secret || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("rotated %v", rotated)
		}
		if code := grant(secret); code != http.StatusUnauthorized {
			t.Errorf("token with the old secret: %d, want 401", code)
		}
		if code := grant(fresh); code != http.StatusOK {
			t.Errorf("token with the new secret: %d, want 200", code)
		}
		// A token the old secret got stops working within seconds, not at
		// its expiry; one of the new secret works on.
		e.clock.Advance(6 * time.Second)
		if code := useToken(old); code != http.StatusUnauthorized {
			t.Errorf("a token of the old secret: %d, want 401", code)
		}
		if code := useToken(tokenOf(fresh)); code != http.StatusNotFound {
			t.Errorf("a token of the new secret: %d, want 404 for an unknown destination", code)
		}
		raw := string(readAll(t, e.do(http.MethodGet, "/admin/v1/audit?object=client:"+id, admin, "", nil)))
		for _, action := range []string{"client.disable", "client.enable", "client.rotate-secret"} {
			if !strings.Contains(raw, action) {
				t.Errorf("audit log lacks %s: %s", action, raw)
			}
		}
		if strings.Contains(raw, fresh) {
			t.Error("the audit log holds the new secret")
		}
	})
	t.Run("bad changes", func(t *testing.T) {
		sender := e.token("send:region:DE08")
		before := e.state()
		wantProblem(t, e.doJSON(http.MethodPatch, "/admin/v1/clients/"+id, admin, map[string]any{}), http.StatusBadRequest, problem.TypeInvalidValue, "disabled")
		wantProblem(t, e.doJSON(http.MethodPatch, "/admin/v1/clients/"+id, admin, map[string]any{"disabled": true, "scopes": []string{}}), http.StatusBadRequest, problem.TypeUnknownField, "scopes")
		wantProblem(t, e.doJSON(http.MethodPatch, "/admin/v1/clients/nobody", admin, map[string]any{"disabled": true}), http.StatusNotFound, problem.TypeNotFound, "clientId")
		wantProblem(t, e.do(http.MethodPost, "/admin/v1/clients/nobody/secret", admin, "", nil), http.StatusNotFound, problem.TypeNotFound, "clientId")
		wantProblem(t, e.doJSON(http.MethodPatch, "/admin/v1/clients/"+id, sender, map[string]any{"disabled": true}), http.StatusForbidden, problem.TypeForbidden, "")
		e.wantUnchanged(before)
	})
}

func TestDecodeDestination(t *testing.T) {
	body := destinationBody(t, "", []string{"DE083110000001", "DE083115000002"}, "enc-cli-0001", "sig-cli-0001")
	delete(body, "destinationId")
	raw, _ := json.Marshal(body)
	d, keys, err := registry.ParseDestination(raw)
	must(t, err)
	if len(d.ID) != 36 || d.Status != store.StatusCreated || d.HomeRegion != "08311" || d.SigningKID != "sig-cli-0001" {
		t.Errorf("destination %+v", d)
	}
	if len(keys) != 2 || keys[0].Use != store.UseEncryption || keys[1].Use != store.UseSigning || keys[0].DestinationID != d.ID {
		t.Fatalf("keys %+v", keys)
	}
	if _, err := jose.ValidatePublicKey(keys[0].JWK, jose.Encryption); err != nil {
		t.Errorf("stored key: %v", err)
	}
	_, _, err = registry.ParseDestination([]byte(`{"services": 1}`))
	if p, ok := problem.As(err); !ok || p.Field != "services" {
		t.Errorf("error %v, want a problem naming services", err)
	}
	if err := e2eStoreAccepts(t, d, keys); err != nil {
		t.Error(err)
	}
}

func e2eStoreAccepts(t *testing.T, d store.Destination, keys []store.Key) error {
	st := flowtest.OpenSQLite(t)
	return st.CreateDestination(context.Background(), "cli", d, keys)
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	must(t, err)
	return string(b)
}
