package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/ars"
)

// TestAreaKeysOfEveryLevel asks /routes with the 8-digit AGS Amtsbote
// prints for a Land, a Regierungsbezirk and a Kreis, and with padded ARS
// and AGS of the same area: each resolves to the area's destination, the
// answer as the Routing API specifies it.
func TestAreaKeysOfEveryLevel(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testAreaKeysOfEveryLevel(t, b) })
	}
}

func testAreaKeysOfEveryLevel(t *testing.T, b flowtest.Backend) {
	st := b.Open(t)
	syncer := newSyncer(t, st)
	e := newEnvOn(t, st, withSyncer(syncer))
	specs := routingSpec(t, e)
	older, current := bwDirectories(t)
	importAreas(t, st, syncer, older, current)
	admin := e.adminToken()
	land, bezirk, kreis := newUUID(t), newUUID(t), newUUID(t)
	e.activeDestination(admin, land, time.Time{}, "DE08")
	e.activeDestination(admin, bezirk, time.Time{}, "DE083")
	e.activeDestination(admin, kreis, time.Time{}, "DE08315")

	for _, tt := range []struct{ query, want string }{
		{"ags=08315000", kreis},
		{"ags=08300000", bezirk},
		{"ags=08000000", land},
		{"ars=083150000000", kreis},
		{"ags=08315", kreis},
		{"ars=08315", kreis},
		{"ars=08000", land},
		{"ags=08000", land},
		{"ars=08300", bezirk},
		{"ags=08300", bezirk},
		{"ags=08315004", kreis}, // Auggen, a Gemeinde without a route of its own
	} {
		t.Run(tt.query, func(t *testing.T) {
			for _, prefix := range []string{"/v1", "/v2"} {
				if got := e.route(specs, prefix, tt.query); got != tt.want {
					t.Errorf("%s/routes?%s = %q, want %q", prefix, tt.query, got, tt.want)
				}
			}
		})
	}
}

// TestAreaSearchAsPeopleType searches the way people type: a combining
// umlaut, "oe" for "ö", "St." for "Sankt", in both stores, each answer
// as the Routing API specifies it.
func TestAreaSearchAsPeopleType(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testAreaSearchAsPeopleType(t, b) })
	}
}

func testAreaSearchAsPeopleType(t *testing.T, b flowtest.Backend) {
	st := b.Open(t)
	syncer := newSyncer(t, st)
	e := newEnvOn(t, st, withSyncer(syncer))
	specs := routingSpec(t, e)
	d, err := ars.NewDirectory(time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC), []ars.Area{
		area("050000000000", ars.Land, 0, "Nordrhein-Westfalen", 0),
		area("053150000000", ars.Kreis, ars.KreisfreieStadt, "Köln, Stadt", 0),
		area("053150000000", ars.Gemeinde, ars.KreisfreieStadtGemeinde, "Köln, Stadt", 1024621),
		area("053820000000", ars.Kreis, ars.Landkreis, "Rhein-Sieg-Kreis", 0),
		area("053820056056", ars.Gemeinde, ars.Stadt, "Sankt Augustin, Stadt", 56521),
		area("053820020020", ars.Gemeinde, ars.Stadt, "Königswinter, Stadt", 41164),
	})
	must(t, err)
	importAreas(t, st, syncer, d)

	koeln := []string{"4053150000000", "6053150000000"}
	for _, tt := range []struct {
		name, term string
		want       []string
	}{
		{"composed umlaut", "Köln", koeln},
		{"o and a combining diaeresis (U+0308)", "Ko\u0308ln", koeln},
		{"oe for ö", "Koeln", koeln},
		{"oe for ö, lower case", "koeln", koeln},
		{"St. for Sankt", "St. Augustin", []string{"6053820056056"}},
		{"St for Sankt", "St Augustin", []string{"6053820056056"}},
		{"oe in a prefix", "Koen*", []string{"6053820020020"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, prefix := range []string{"/v1", "/v2"} {
				path := prefix + "/areas?areaSearchexpression=" + url.QueryEscape(tt.term)
				resp := e.do(http.MethodGet, path, "", "", nil)
				body := readAll(t, resp)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
				}
				validate(t, specs, e, path, resp, body)
				var res struct {
					TotalCount int `json:"totalCount"`
					Areas      []struct{ ID string }
				}
				must(t, json.Unmarshal(body, &res))
				var got []string
				for _, a := range res.Areas {
					got = append(got, a.ID)
				}
				slices.Sort(got)
				if !slices.Equal(got, tt.want) || res.TotalCount != len(tt.want) {
					t.Errorf("GET %s found %v (total %d), want %v", path, got, res.TotalCount, tt.want)
				}
			}
		})
	}
}
