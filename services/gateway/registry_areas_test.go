package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// withSyncer makes the gateway follow s, so a test can announce reference
// data it wrote to the store.
func withSyncer(s *routesync.Syncer) envOption {
	return func(c *gateway.Config) { c.Routes = s }
}

// newSyncer returns a routing registry on st without a bus.
func newSyncer(t *testing.T, st store.Store) *routesync.Syncer {
	t.Helper()
	s, err := routesync.New(routesync.Config{Store: st.(store.Reference)})
	must(t, err)
	return s
}

// area is a directory entry with the AGS GV100AD gives it.
func area(a string, l ars.Level, kind ars.Kind, name string, pop int) ars.Area {
	x := ars.Area{ARS: a, Level: l, Kind: kind, Name: name, Population: pop}
	switch l {
	case ars.Gemeinde:
		x.AGS = a[:5] + a[9:]
	case ars.Land, ars.Regierungsbezirk, ars.Kreis:
		x.AGS = a[:8]
	}
	return x
}

// importAreas imports directories of the given Gebietsstände into the
// store, oldest first, and announces them to s.
func importAreas(t *testing.T, st store.Store, s *routesync.Syncer, dirs ...*ars.Directory) {
	t.Helper()
	ctx := context.Background()
	for _, d := range dirs {
		_, err := st.(store.Reference).ImportAreas(ctx, "test", d)
		must(t, err)
	}
	_, err := st.(store.Reference).ImportCatalogue(ctx, "test", nil)
	must(t, err)
	_, err = s.PublishReference(ctx)
	must(t, err)
}

// Areas of the registry tests: Baden-Württemberg with Freiburg, the
// Landkreis Breisgau-Hochschwarzwald with Auggen and Müllheim. In the
// later directory Müllheim moved to another Gemeindeverband: its old ARS
// is retired, its AGS lives on under a new one.
var (
	muellheimOld = area("083155012074", ars.Gemeinde, ars.Stadt, "Müllheim, Stadt", 19650)
	muellheimNew = area("083155099074", ars.Gemeinde, ars.Stadt, "Müllheim im Markgräflerland, Stadt", 19650)
	bwAreas      = []ars.Area{
		area("080000000000", ars.Land, 0, "Baden-Württemberg", 0),
		area("083000000000", ars.Regierungsbezirk, 0, "Freiburg", 0),
		area("083110000000", ars.Kreis, ars.KreisfreieStadt, "Freiburg im Breisgau, Stadt", 0),
		area("083110000000", ars.Gemeinde, ars.KreisfreieStadtGemeinde, "Freiburg im Breisgau, Stadt", 237460),
		area("083150000000", ars.Kreis, ars.Landkreis, "Breisgau-Hochschwarzwald", 0),
		area("083155012004", ars.Gemeinde, ars.KreisangehoerigeGemeinde, "Auggen", 2750),
	}
)

func bwDirectories(t *testing.T) (older, current *ars.Directory) {
	t.Helper()
	older, err := ars.NewDirectory(time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC), append(bwAreas[:len(bwAreas):len(bwAreas)], muellheimOld))
	must(t, err)
	current, err = ars.NewDirectory(time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC), append(bwAreas[:len(bwAreas):len(bwAreas)], muellheimNew))
	must(t, err)
	return older, current
}

// fitDestination is FIT-Connect's CreateDestination body for serviceA in
// regions.
func fitDestination(t *testing.T, regions ...string) map[string]any {
	t.Helper()
	id := newUUID(t)
	body := destinationBody(t, id, regions, "enc-"+id[:8], "sig-"+id[:8])
	delete(body, "destinationId")
	return body
}

// TestRegionsOutsideTheDirectory creates and changes destinations with
// regions the area directory does not hold, through the admin API and
// FIT-Connect's destination endpoints: each is a 422 naming the region,
// a retired one names its retirement and the Gemeinde's current ARS, and
// nothing is written. Before a directory is imported they pass.
func TestRegionsOutsideTheDirectory(t *testing.T) {
	st := flowtest.OpenSQLite(t)
	syncer := newSyncer(t, st)
	f := newFlowEnv(t, st, withSyncer(syncer))
	admin := f.adminToken()
	creator := f.token("create:destination")

	// Without a directory the form is all that is checked.
	early := decodeReply[map[string]any](t, f.callJSON(t, http.MethodPost, "/v1/destinations", creator, fitDestination(t, "DE16999")), http.StatusCreated)
	earlyID := early["destinationId"].(string)

	older, current := bwDirectories(t)
	importAreas(t, st, syncer, older, current)

	manager := f.token("manage:destination:" + earlyID)
	for _, tt := range []struct {
		name, region, want string
		extra              map[string]string
	}{
		{"a Kreis that does not exist", "DE08999", "region DE08999 is not in the area directory (Gebietsstand 2025-11-30)", nil},
		{"a Gemeinde that does not exist", "DE083159999999", "region DE083159999999 is not in the area directory", nil},
		{"a Gemeindeverband the directory lacks", "DE083155012", "region DE083155012 is not in the area directory", nil},
		{"a retired Gemeinde", "DE083155012074", "the Gemeinde with AGS 08315074 has ARS 083155099074 now",
			map[string]string{"currentArs": "083155099074", "retiredStand": "2025-11-30"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const field = "services[0].regions[1]"
			check := func(p problem.Problem) {
				t.Helper()
				if !strings.Contains(p.Detail, tt.region) || !strings.Contains(p.Detail, tt.want) {
					t.Errorf("detail %q, want it to name %s and say %q", p.Detail, tt.region, tt.want)
				}
				for k, v := range tt.extra {
					if p.Extra[k] != v {
						t.Errorf("extension %s = %v, want %s", k, p.Extra[k], v)
					}
				}
			}
			before := f.state()
			check(f.callJSON(t, http.MethodPost, "/v1/destinations", creator, fitDestination(t, "DE08311", tt.region)).
				problem(t, http.StatusUnprocessableEntity, problem.TypeUnprocessable, field))
			body := destinationBody(t, newUUID(t), []string{"DE08311", tt.region}, "enc-admin-1", "sig-admin-1")
			check(wantProblem(t, f.doJSON(http.MethodPost, "/admin/v1/destinations", admin, body), http.StatusUnprocessableEntity, problem.TypeUnprocessable, field))

			services := []any{map[string]any{"identifier": serviceA, "regions": []string{"DE16999", tt.region},
				"submissionSchemas": []any{map[string]any{"mimeType": "application/json", "schemaUri": "https://schema.fitko.de/fim/s00000096_1.0.schema.json"}}}}
			check(f.callJSON(t, http.MethodPatch, "/v1/destinations/"+earlyID, manager, map[string]any{"services": services}).
				problem(t, http.StatusUnprocessableEntity, problem.TypeUnprocessable, field))
			check(wantProblem(t, f.doJSON(http.MethodPatch, "/admin/v1/destinations/"+earlyID, admin, map[string]any{"services": services}),
				http.StatusUnprocessableEntity, problem.TypeUnprocessable, field))
			put := fitDestination(t)
			for _, k := range []string{"encryptionPublicKey", "signingPublicKey", "callback"} {
				delete(put, k)
			}
			put["status"], put["services"], put["encryptionKid"] = "created", services, early["encryptionKid"]
			check(f.callJSON(t, http.MethodPut, "/v1/destinations/"+earlyID, manager, put).
				problem(t, http.StatusUnprocessableEntity, problem.TypeUnprocessable, field))
			f.wantUnchangedExceptClients(before)
		})
	}

	// A region stored before the directory arrived is not judged again:
	// the destination can still be activated.
	f.callJSON(t, http.MethodPatch, "/v1/destinations/"+earlyID, manager, []byte(`{"status": "active"}`)).want(t, http.StatusOK)

	// Every level the directory holds is accepted, and Germany as a whole.
	for _, regions := range [][]string{{"DE"}, {"DE08"}, {"DE083"}, {"DE08315"}, {"DE083110000000", "DE083155012004"}, {"DE083155099074"}} {
		f.callJSON(t, http.MethodPost, "/v1/destinations", creator, fitDestination(t, regions...)).want(t, http.StatusCreated)
	}
}

// TestCoverageIsWhatRoutesAnswer registers destinations in every status
// and checks that coverage counts a Gemeinde exactly when /routes answers
// a route for it, and that a destination in status created claims its
// regions only from its activation on.
func TestCoverageIsWhatRoutesAnswer(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testCoverageIsWhatRoutesAnswer(t, b) })
	}
}

func testCoverageIsWhatRoutesAnswer(t *testing.T, b flowtest.Backend) {
	st := b.Open(t)
	syncer := newSyncer(t, st)
	f := newFlowEnv(t, st, withSyncer(syncer))
	specs := routingSpec(t, f.env)
	older, current := bwDirectories(t)
	importAreas(t, st, syncer, older, current)
	admin := f.adminToken()
	creator := f.token("create:destination")

	kreis := newUUID(t)
	f.activeDestination(admin, kreis, time.Time{}, "DE08315")
	// Freiburg's destination was active and is inactive now: it stays
	// responsible, and /routes answers nothing for Freiburg.
	freiburg := newUUID(t)
	f.activeDestination(admin, freiburg, time.Time{}, "DE08311")
	decode[map[string]any](t, f.do(http.MethodPost, "/admin/v1/destinations/"+freiburg+"/deactivate", admin, "", nil), http.StatusOK)
	// Two destinations registered and never activated: the Land, and an
	// override of Auggen inside the active Kreis.
	land := decodeReply[map[string]any](t, f.callJSON(t, http.MethodPost, "/v1/destinations", creator, fitDestination(t, "DE08")), http.StatusCreated)["destinationId"].(string)
	auggen := decodeReply[map[string]any](t, f.callJSON(t, http.MethodPost, "/v1/destinations", creator, fitDestination(t, "DE083155012004")), http.StatusCreated)["destinationId"].(string)

	// The created override's routes are checked when written.
	f.callJSON(t, http.MethodPost, "/v1/destinations", creator, fitDestination(t, "DE083155012004")).
		problem(t, http.StatusConflict, problem.TypeConflict, "services[0].regions[0]")

	type answer struct{ freiburg, auggen, muellheim string }
	routes := func() answer {
		t.Helper()
		return answer{f.env.route(specs, "/v2", "ars=083110000000"), f.env.route(specs, "/v2", "ars=083155012004"), f.env.route(specs, "/v1", "ags=08315074")}
	}
	coverage := func(a answer) {
		t.Helper()
		c := decode[coverageAnswer](t, f.do(http.MethodGet, "/admin/v1/coverage?leikaKey="+leikaA, admin, "", nil), http.StatusOK)
		covered := map[string]bool{}
		for _, l := range c.Lands {
			if l.Land != "08" {
				continue
			}
			for _, u := range l.Uncovered {
				covered[u.ARS] = false
			}
			if l.Gemeinden != 3 || l.Covered != 3-len(l.Uncovered) {
				t.Errorf("Land 08: %d of %d Gemeinden covered, %d uncovered", l.Covered, l.Gemeinden, len(l.Uncovered))
			}
		}
		for ars, dest := range map[string]string{"083110000000": a.freiburg, "083155012004": a.auggen, "083155099074": a.muellheim} {
			if _, uncovered := covered[ars]; uncovered == (dest != "") {
				t.Errorf("Gemeinde %s: /routes answers %q, coverage counts it %v", ars, dest, !uncovered)
			}
		}
	}

	got := routes()
	if got != (answer{"", kreis, kreis}) {
		t.Errorf("before activation: %+v; want Freiburg none (inactive), Auggen and Müllheim %s (the Kreis)", got, kreis)
	}
	coverage(got)

	// FIT-Connect's activation: the override takes Auggen, the Land takes
	// nothing the Kreis and Freiburg's destination hold.
	f.callJSON(t, http.MethodPatch, "/v1/destinations/"+auggen, f.token("manage:destination:"+auggen), []byte(`{"status": "active"}`)).want(t, http.StatusOK)
	f.callJSON(t, http.MethodPatch, "/v1/destinations/"+land, f.token("manage:destination:"+land), []byte(`{"status": "active"}`)).want(t, http.StatusOK)
	got = routes()
	if got != (answer{"", auggen, kreis}) {
		t.Errorf("after activation: %+v; want Freiburg none, Auggen %s, Müllheim %s", got, auggen, kreis)
	}
	coverage(got)

	// Inactive after active keeps the claim: Auggen answers nothing.
	f.callJSON(t, http.MethodPatch, "/v1/destinations/"+auggen, f.token("manage:destination:"+auggen), []byte(`{"status": "inactive"}`)).want(t, http.StatusOK)
	got = routes()
	if got != (answer{"", "", kreis}) {
		t.Errorf("after deactivation: %+v; want only Müllheim %s", got, kreis)
	}
	coverage(got)
}
