package cli

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestCoverageCountsWhatRoutesAnswer runs `amtsbote coverage` over a
// registry with a destination in every status: a Gemeinde counts only
// when its route's destination is active, as /routes answers; one whose
// responsible destination is inactive does not, and one that only a
// destination never activated names falls to the active route above it.
func TestCoverageCountsWhatRoutesAnswer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _, err := openStore(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ars.NewDirectory(time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC), []ars.Area{
		{ARS: "080000000000", AGS: "08000000", Name: "Baden-Württemberg", Level: ars.Land},
		{ARS: "083110000000", AGS: "08311000", Name: "Freiburg im Breisgau, Stadt", Level: ars.Kreis, Kind: ars.KreisfreieStadt},
		{ARS: "083110000000", AGS: "08311000", Name: "Freiburg im Breisgau, Stadt", Level: ars.Gemeinde, Kind: ars.KreisfreieStadtGemeinde, Population: 237460},
		{ARS: "083150000000", AGS: "08315000", Name: "Breisgau-Hochschwarzwald", Level: ars.Kreis, Kind: ars.Landkreis},
		{ARS: "083155012004", AGS: "08315004", Name: "Auggen", Level: ars.Gemeinde, Kind: ars.KreisangehoerigeGemeinde, Population: 2750},
		{ARS: "083155003064", AGS: "08315064", Name: "Kirchzarten", Level: ars.Gemeinde, Kind: ars.KreisangehoerigeGemeinde, Population: 10266},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportAreas(ctx, "test", d); err != nil {
		t.Fatal(err)
	}
	const service = "urn:de:fim:leika:leistung:99108008000000"
	for i, dest := range []struct {
		status store.DestinationStatus
		region string
	}{
		{store.StatusActive, "DE08"},
		{store.StatusInactive, "DE08311"},       // Freiburg: responsible, not answering
		{store.StatusCreated, "DE083155012004"}, // Auggen: never activated, claims nothing
		{store.StatusDecommissioned, "DE08315"}, // gone
	} {
		id := "c0000000-0000-4000-8000-00000000000" + string(rune('1'+i))
		err := st.CreateDestination(ctx, "test", store.Destination{
			ID: id, Status: dest.status, EncryptionKID: "enc-" + id[:8], MetadataVersions: []string{"1.0.0"},
			Contact:  store.ContactInformation{LegalName: "Behörde " + dest.region, Address: "Markt 1", Phone: "+49 1", Email: "a@b.example"},
			Services: []store.Service{{Identifier: service, Regions: []string{dest.region}, SubmissionSchemas: []store.SubmissionSchema{{MimeType: "application/json", SchemaURI: "https://schema.example/s.json"}}}},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ImportCatalogue(ctx, "test", []leika.Service{{Key: "99108008000000", Name: "Gewerbeanmeldung"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(t, dir, "coverage", "--leika", "99108008000000", "--json", "--uncovered")
	if err != nil {
		t.Fatalf("coverage: %v\n%s", err, out)
	}
	var c routing.Coverage
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if c.Gemeinden != 3 || c.Covered != 2 || c.CoveredPopulation != 2750+10266 || len(c.Lands) != 1 {
		t.Fatalf("coverage %+v: want Auggen and Kirchzarten covered, Freiburg not", c)
	}
	if u := c.Lands[0].Uncovered; len(u) != 1 || u[0].ARS != "083110000000" {
		t.Errorf("uncovered %+v, want Freiburg alone", u)
	}

	// A key the catalogue lacks is said to be so, beside its 0 %.
	out, err = runCLI(t, dir, "coverage", "--leika", "99108008000001")
	if err != nil || !strings.Contains(out, "99108008000001 is not in the imported LeiKa catalogue (1 services)") {
		t.Errorf("coverage of a key not in the catalogue: %v\n%s", err, out)
	}
	// A wrong flag value is a command used wrongly (exit 2).
	for _, args := range [][]string{{"--leika", "123"}, {"--leika", "99108008000000", "--at", "today"}} {
		var usage *UsageError
		if _, err := runCLI(t, dir, append([]string{"coverage"}, args...)...); !errors.As(err, &usage) {
			t.Errorf("coverage %v: %v, want a usage error", args, err)
		}
	}
}
