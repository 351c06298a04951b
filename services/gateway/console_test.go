package gateway_test

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/set"
	"github.com/amtsbote/amtsbote/pkg/store"
)

type verifiedAnswer struct {
	CaseID     string `json:"caseId"`
	TotalCount int    `json:"totalCount"`
	Events     []struct {
		Type     string `json:"type"`
		Issuer   string `json:"iss"`
		KID      string `json:"kid"`
		Signer   string `json:"signer"`
		Verified bool   `json:"verified"`
		Reason   string `json:"reason"`
	} `json:"events"`
}

// TestConsoleVerifiedEvents records events signed rightly and wrongly in
// a case's log and reads them back with what their signatures say.
func TestConsoleVerifiedEvents(t *testing.T) {
	e := newEnv(t)
	d := e.createDestination(newUUID(t), store.StatusActive, "DE08311")
	caseID, sid := newUUID(t), newUUID(t)
	impostor := keyPair(t, otherSignerKey).Private
	destKey := keyPair(t, sigKey1).Private
	record := func(iss string, key *rsa.PrivateKey, kid string) {
		t.Helper()
		c, err := set.New(set.CreateSubmission, iss, sid, caseID, map[string]any{}, e.clock.Now())
		must(t, err)
		tok, err := set.Sign(c, key, kid)
		must(t, err)
		_, err = e.st.ProjectEvent(context.Background(), store.Event{
			JTI: c.JTI, CaseID: caseID, SubmissionID: sid, Type: set.CreateSubmission, Issuer: iss, IssuedAt: c.IssuedAt, Token: tok,
		}, func(*store.Submission, []store.Event) {})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record event: %v", err)
		}
	}
	amtsbote := e.srv.URL
	record(amtsbote, e.signer.Private, e.signer.Public.KeyID)
	record(d.ID, destKey, d.SigningKID)
	record(d.ID, impostor, d.SigningKID)
	record(amtsbote, e.signer.Private, "another-kid")
	record(d.ID, destKey, d.EncryptionKID)
	record(d.ID, destKey, "no-such-kid")
	record("https://elsewhere.example", impostor, "x")
	record(strings.ToUpper(d.ID), destKey, d.SigningKID)

	var got verifiedAnswer
	body := newOwnSpec(t, e).call(t, http.MethodGet, "/admin/v1/cases/"+caseID+"/events/verified", e.adminToken(), "", nil, http.StatusOK)
	must(t, json.Unmarshal(body, &got))
	want := []struct {
		signer   string
		verified bool
		reason   string
	}{
		{"amtsbote", true, ""},
		{"destination", true, ""},
		{"destination", false, "signature does not verify"},
		{"amtsbote", false, "is not Amtsbote's signing key"},
		{"destination", false, "not its signing key"},
		{"unknown", false, "is not a key of"},
		{"unknown", false, "is not a key of"},
		{"destination", true, ""},
	}
	if got.CaseID != caseID || got.TotalCount != len(want) || len(got.Events) != len(want) {
		t.Fatalf("answer %+v, want %d events of case %s", got, len(want), caseID)
	}
	for i, w := range want {
		ev := got.Events[i]
		if ev.Signer != w.signer || ev.Verified != w.verified || !strings.Contains(ev.Reason, w.reason) || (w.verified && ev.Reason != "") {
			t.Errorf("event %d: %+v, want signer %s, verified %v, reason with %q", i+1, ev, w.signer, w.verified, w.reason)
		}
		if ev.Type != "create-submission" || ev.KID == "" {
			t.Errorf("event %d: type %q, kid %q", i+1, ev.Type, ev.KID)
		}
	}
}

// TestConsoleBadInput answers every malformed request to the console's
// endpoints with a problem naming the parameter.
func TestConsoleBadInput(t *testing.T) {
	e := newEnv(t)
	admin := e.adminToken()
	known := newUUID(t)
	for _, tc := range []struct {
		name, path string
		token      string
		status     int
		typ, field string
	}{
		{"case id not a UUID", "/admin/v1/cases/nope/events/verified", admin, 400, problem.TypeInvalidRequest, "caseId"},
		{"unknown case", "/admin/v1/cases/" + known + "/events/verified", admin, 404, problem.TypeCaseNotFound, ""},
		{"limit out of range", "/admin/v1/cases/" + known + "/events/verified?limit=501", admin, 400, problem.TypeInvalidRequest, "limit"},
		{"explain without service", "/admin/v1/routing/explain?ars=08", admin, 400, problem.TypeInvalidRequest, "service"},
		{"explain a bad service", "/admin/v1/routing/explain?service=abfall&ars=08", admin, 400, problem.TypeInvalidValue, "service"},
		{"explain without a place", "/admin/v1/routing/explain?service=99108008000000", admin, 400, problem.TypeInvalidRequest, "ars"},
		{"explain with two places", "/admin/v1/routing/explain?service=99108008000000&ars=08&place=Auggen", admin, 400, problem.TypeInvalidRequest, "ars"},
		{"explain a bad ars", "/admin/v1/routing/explain?service=99108008000000&ars=0", admin, 400, problem.TypeInvalidValue, "ars"},
		{"explain a bad time", "/admin/v1/routing/explain?service=99108008000000&ars=08&at=morgen", admin, 400, problem.TypeInvalidValue, "at"},
		{"explain a repeated service", "/admin/v1/routing/explain?service=99108008000000&service=99108008000000&ars=08", admin, 400, problem.TypeInvalidRequest, "service"},
		{"a place name without a directory", "/admin/v1/routing/explain?service=99108008000000&place=Auggen", admin, 409, problem.TypeConflict, "place"},
		{"coverage without service", "/admin/v1/coverage/kreise", admin, 400, problem.TypeInvalidRequest, "service"},
		{"coverage of a bad service", "/admin/v1/coverage/kreise?service=" + url.QueryEscape("urn:"), admin, 400, problem.TypeInvalidValue, "service"},
		{"coverage without a directory", "/admin/v1/coverage/kreise?service=99108008000000", admin, 409, problem.TypeConflict, ""},
		{"overview for a sender", "/admin/v1/overview", e.token("send:region:DE08"), 403, problem.TypeForbidden, ""},
		{"explain without a token", "/admin/v1/routing/explain?service=99108008000000&ars=08", "", 401, problem.TypeUnauthorized, ""},
		{"a file the console lacks", "/ui/nope.js", "", 404, problem.TypeNotFound, "path"},
		{"a path out of the console", "/ui/../gateway.go", "", 404, problem.TypeNotFound, "path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.state()
			wantProblem(t, e.do(http.MethodGet, tc.path, tc.token, "", nil), tc.status, tc.typ, tc.field)
			e.wantUnchanged(before)
		})
	}
}

// TestConsoleFiles serves the console's pages under a policy that allows
// its own files only, and the overview without a bus says it has no
// dead letters to count rather than none.
func TestConsoleFiles(t *testing.T) {
	e := newEnv(t)
	for path, ct := range map[string]string{"/ui/": "text/html", "/ui/app.js": "text/javascript", "/ui/style.css": "text/css"} {
		resp := e.do(http.MethodGet, path, "", "", nil)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ct) || len(body) == 0 {
			t.Errorf("%s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
	var o map[string]any
	must(t, json.Unmarshal(newOwnSpec(t, e).call(t, http.MethodGet, "/admin/v1/overview", e.adminToken(), "", nil, http.StatusOK), &o))
	if dl, ok := o["deadLetters"]; !ok || dl != nil {
		t.Errorf("deadLetters %v, want null without a bus", dl)
	}
	if o["waiting"] != float64(0) {
		t.Errorf("waiting %v, want 0", o["waiting"])
	}
}

// overdueDown is a store whose query of waiting submissions fails, as
// when the database stops answering.
type overdueDown struct{ store.Store }

func (overdueDown) Overdue(context.Context, []time.Time) ([]store.OverdueDestination, error) {
	return nil, errors.New("connect: connection refused")
}

// TestConsoleOverviewWithoutStore: while the store does not answer, the
// overview still shows the process's series, with the store's figures
// null and the store named as not answering.
func TestConsoleOverviewWithoutStore(t *testing.T) {
	e := newEnvOn(t, overdueDown{flowtest.OpenSQLite(t)})
	decode[map[string]any](t, e.do(http.MethodGet, "/v1/info", "", "", nil), http.StatusOK)
	var o map[string]any
	must(t, json.Unmarshal(newOwnSpec(t, e).call(t, http.MethodGet, "/admin/v1/overview", e.adminToken(), "", nil, http.StatusOK), &o))
	if o["waiting"] != nil || o["overdue"] != nil {
		t.Errorf("waiting %v, overdue %v, want null", o["waiting"], o["overdue"])
	}
	if u, _ := o["unavailable"].([]any); len(u) != 1 || u[0] != "store" {
		t.Errorf("unavailable %v, want [store]", o["unavailable"])
	}
	if s, _ := o["series"].([]any); len(s) == 0 {
		t.Error("no series")
	}
}

type explainAnswer struct {
	Place *struct {
		ARS, Name, Level string
	} `json:"place"`
	Places      []struct{ ARS, Name, Level string } `json:"places"`
	PlacesTotal int                                 `json:"placesTotal"`
	Match       *struct {
		Region, Level, DestinationID string
	} `json:"match"`
	Routes []struct {
		Region, Level, DestinationID, Outcome string
	} `json:"routes"`
}

// TestConsoleExplainAndCoverage explains resolutions over the real
// directory, with a Kreis route that starts later than the Land's.
func TestConsoleExplainAndCoverage(t *testing.T) {
	e := newEnv(t)
	admin := e.adminToken()
	e.importFile(admin, "gv100ad", "GV100AD_30112025.txt")
	later := e.clock.Now().Add(time.Hour)
	e.activeDestination(admin, destLandBW, time.Time{}, "DE08")
	e.activeDestination(admin, destKreisBH, later, "DE08315")
	spec := newOwnSpec(t, e)
	explain := func(t *testing.T, query string) explainAnswer {
		t.Helper()
		var x explainAnswer
		must(t, json.Unmarshal(spec.call(t, http.MethodGet, "/admin/v1/routing/explain?service=99108008000000&"+query, admin, "", nil, http.StatusOK), &x))
		return x
	}
	type route struct{ region, outcome string }
	outcomes := func(x explainAnswer) []route {
		var out []route
		for _, r := range x.Routes {
			out = append(out, route{r.Region, r.Outcome})
		}
		return out
	}

	t.Run("before the Kreis route starts", func(t *testing.T) {
		x := explain(t, "ars=083155012004")
		if x.Place == nil || x.Place.Name != "Auggen" || x.Place.Level != "gemeinde" {
			t.Fatalf("place %+v", x.Place)
		}
		if x.Match == nil || x.Match.DestinationID != destLandBW || x.Match.Level != "land" {
			t.Errorf("match %+v, want the Land's", x.Match)
		}
		if got, want := outcomes(x), []route{{"DE08315", "not valid then"}, {"DE08", "matched"}}; !slices.Equal(got, want) {
			t.Errorf("routes %v, want %v", got, want)
		}
	})
	t.Run("after", func(t *testing.T) {
		x := explain(t, "place=Auggen&at="+url.QueryEscape(later.Add(time.Minute).Format(time.RFC3339)))
		if x.Match == nil || x.Match.DestinationID != destKreisBH || x.Match.Level != "kreis" {
			t.Errorf("match %+v, want the Kreis's", x.Match)
		}
		if got, want := outcomes(x), []route{{"DE08315", "matched"}, {"DE08", "a more specific route matched"}}; !slices.Equal(got, want) {
			t.Errorf("routes %v, want %v", got, want)
		}
	})
	t.Run("outside every route", func(t *testing.T) {
		x := explain(t, "ars=09162")
		if x.Match != nil || len(x.Routes) != 0 || x.Place == nil || x.Place.Level != "kreis" {
			t.Errorf("answer %+v, want München as a Kreis and no route", x)
		}
	})
	t.Run("a name several areas bear", func(t *testing.T) {
		x := explain(t, "place=freiburg")
		if x.Place != nil || x.Match != nil || len(x.Places) < 2 {
			t.Errorf("answer %+v, want a choice of places", x)
		}
	})
	t.Run("a name too many areas bear", func(t *testing.T) {
		x := explain(t, "place=dorf")
		if x.Place != nil || len(x.Places) != 20 || x.PlacesTotal <= 20 {
			t.Errorf("%d places of %d, want the first 20 of more", len(x.Places), x.PlacesTotal)
		}
	})
	t.Run("a kreisfreie Stadt by its name", func(t *testing.T) {
		x := explain(t, "place="+url.QueryEscape("Freiburg im Breisgau"))
		if x.Place == nil || x.Place.ARS != "083110000000" || x.Place.Level != "gemeinde" {
			t.Errorf("place %+v, want the Gemeinde Freiburg im Breisgau", x.Place)
		}
	})
	t.Run("a Stadt and its Landkreis of one name", func(t *testing.T) {
		x := explain(t, "place="+url.QueryEscape("München"))
		var got []string
		for _, p := range x.Places {
			got = append(got, p.ARS+" "+p.Level)
		}
		// The kreisfreie Stadt once, as its Gemeinde, beside the Landkreis.
		if want := []string{"091620000000 gemeinde", "091840000000 kreis"}; !slices.Equal(got, want) {
			t.Errorf("places %v, want %v", got, want)
		}
	})
	t.Run("unknown places", func(t *testing.T) {
		wantProblem(t, e.do(http.MethodGet, "/admin/v1/routing/explain?service=99108008000000&place=Xyzzy", admin, "", nil), 422, problem.TypeUnprocessable, "place")
		wantProblem(t, e.do(http.MethodGet, "/admin/v1/routing/explain?service=99108008000000&ars=081159999999", admin, "", nil), 422, problem.TypeUnprocessable, "ars")
	})

	t.Run("coverage per Kreis", func(t *testing.T) {
		var c struct {
			Population, CoveredPopulation, UncoveredTotal int
			Lands                                         []struct {
				Land       string
				Population int
				Kreise     []struct {
					ARS                           string
					Gemeinden, Covered            int
					Population, CoveredPopulation int
				}
			}
			Uncovered []struct{ ARS, Kreis string }
		}
		must(t, json.Unmarshal(spec.call(t, http.MethodGet, "/admin/v1/coverage/kreise?service=99108008000000", admin, "", nil, http.StatusOK), &c))
		kreise, sum := 0, 0
		for _, l := range c.Lands {
			kreise += len(l.Kreise)
			for _, k := range l.Kreise {
				if k.ARS[:2] != l.Land {
					t.Errorf("Kreis %s in Land %s", k.ARS, l.Land)
				}
				sum += k.Population
				if covered := l.Land == "08"; (k.Covered == k.Gemeinden && k.CoveredPopulation == k.Population) != covered {
					t.Errorf("Kreis %s: %d of %d Gemeinden covered", k.ARS, k.Covered, k.Gemeinden)
				}
			}
		}
		if kreise < 390 || kreise > 410 || len(c.Lands) != 16 {
			t.Errorf("%d Kreise in %d Länder", kreise, len(c.Lands))
		}
		if sum != c.Population || c.CoveredPopulation <= 0 || c.CoveredPopulation >= c.Population {
			t.Errorf("population %d, of Kreise %d, covered %d", c.Population, sum, c.CoveredPopulation)
		}
		if len(c.Uncovered) != 500 || c.UncoveredTotal <= 500 || c.Uncovered[0].ARS[:5] != c.Uncovered[0].Kreis {
			t.Errorf("%d of %d uncovered listed, first %+v", len(c.Uncovered), c.UncoveredTotal, c.Uncovered[0])
		}
	})
}
