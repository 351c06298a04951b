package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// demoFile is what `amtsbote dev` writes to <data dir>/demo.json for scripts.
type demoFile struct {
	BaseURL      string            `json:"baseUrl"`
	TokenURL     string            `json:"tokenUrl"`
	NATSURL      string            `json:"natsUrl"`
	Clients      []demoClient      `json:"clients"`
	Destinations []demoDestination `json:"destinations"`
}

type demoClient struct {
	Role         string   `json:"role"` // sender or receiver
	ClientID     string   `json:"clientId"`
	ClientSecret string   `json:"clientSecret"`
	Scopes       []string `json:"scopes"`
}

type demoDestination struct {
	DestinationID     string   `json:"destinationId"`
	Name              string   `json:"name"`
	Level             string   `json:"level"`
	Region            string   `json:"region"`
	Services          []string `json:"services"`
	EncryptionKID     string   `json:"encryptionKid"`
	EncryptionKeyFile string   `json:"encryptionKeyFile"`
	SigningKID        string   `json:"signingKid"`
	SigningKeyFile    string   `json:"signingKeyFile"`
}

// demoPlace is a real authority's area, typed in from the Destatis GV100AD
// directory (Gebietsstand 30.11.2025), and the LeiKa services it takes.
type demoPlace struct {
	name, level, ars string
	contact          store.ContactInformation
	services         []string // 14-digit LeiKa keys
}

var demoPlaces = []demoPlace{
	{
		name: "Gemeinde Kirchzarten", level: "gemeinde", ars: "083155003064",
		contact: store.ContactInformation{
			LegalName: "Gemeinde Kirchzarten", Address: "Rathaus, 79199 Kirchzarten",
			Phone: "+49 7661 0", Email: "gewerbe@kirchzarten.example", Unit: "Gewerbeamt",
		},
		services: []string{"99050012000000"}, // Gewerbe
	},
	{
		name: "Landratsamt Breisgau-Hochschwarzwald", level: "kreis", ars: "083150000000",
		contact: store.ContactInformation{
			LegalName: "Landratsamt Breisgau-Hochschwarzwald", Address: "Landratsamt, 79098 Freiburg im Breisgau",
			Phone: "+49 761 0", Email: "poststelle@lkbh.example", Unit: "Fahrerlaubnisbehörde",
		},
		services: []string{"99023001000000", "99012008000000"}, // Führerschein, Baugenehmigung
	},
	{
		name: "Land Baden-Württemberg", level: "land", ars: "080000000000",
		contact: store.ContactInformation{
			LegalName: "Land Baden-Württemberg", Address: "Poststelle, 70173 Stuttgart",
			Phone: "+49 711 0", Email: "poststelle@bw.example",
		},
		services: []string{"99050012000000", "99025002000000"}, // Gewerbe (fallback), Gaststättengewerbe
	},
}

// demoAreas are the demo places and the areas above them, typed in from the
// Destatis GV100AD directory (Gebietsstand 30.11.2025), so the Routing API
// answers for them before a full directory is imported. Figures of the
// higher levels are derived from their Gemeinden.
var demoAreas = []ars.Area{
	{ARS: "080000000000", AGS: "08000000", Name: "Baden-Württemberg", Seat: "Stuttgart", Level: ars.Land},
	{ARS: "083000000000", AGS: "08300000", Name: "Reg.-Bez. Freiburg", Seat: "Freiburg im Breisgau", Level: ars.Regierungsbezirk},
	{ARS: "083150000000", AGS: "08315000", Name: "Breisgau-Hochschwarzwald", Seat: "Freiburg im Breisgau", Level: ars.Kreis, Kind: ars.Landkreis},
	{ARS: "083155003000", Name: "GVV Dreisamtal", Seat: "Kirchzarten", Level: ars.Gemeindeverband, Kind: ars.Verwaltungsverband},
	{ARS: "083155003064", AGS: "08315064", Name: "Kirchzarten", Level: ars.Gemeinde, Kind: ars.KreisangehoerigeGemeinde,
		Population: 10266, Male: 4863, Hectares: 2113, PostalCode: "79199", PostalCodeUnique: true},
}

// seedDemoAreas stores the demo areas as seeded ones, which an official
// import of any vintage replaces, unless a directory was imported.
func seedDemoAreas(ctx context.Context, st store.Reference) error {
	dir, err := ars.NewDirectory(time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC), demoAreas)
	if err != nil {
		return fmt.Errorf("demo areas: %w", err)
	}
	if _, err := st.SeedAreas(ctx, "dev", dir); err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("store demo areas: %w", err)
	}
	return nil
}

// region returns the FIT-Connect region of the place: "DE" and the ARS
// prefix of its level.
func (p demoPlace) region() string {
	switch p.level {
	case "land":
		return "DE" + p.ars[:2]
	case "kreis":
		return "DE" + p.ars[:5]
	default:
		return "DE" + p.ars
	}
}

// loadDemo returns the demo data of an earlier start when it is still in st.
func loadDemo(ctx context.Context, st store.Store, dataDir string) (*demoFile, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, "demo.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read demo.json: %w", err)
	}
	var d demoFile
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("read demo.json: %w", err)
	}
	for _, dest := range d.Destinations {
		if _, err := st.Destination(ctx, dest.DestinationID); errors.Is(err, store.ErrNotFound) {
			return nil, nil // another database: create the demo anew
		} else if err != nil {
			return nil, fmt.Errorf("check demo destination: %w", err)
		}
	}
	return &d, nil
}

// createDemo registers the demo destinations with fresh key pairs and one
// sender and one receiver client through the registry operations, and
// writes demo.json.
func createDemo(ctx context.Context, reg *registry.Registry, dataDir, baseURL, natsURL string) (*demoFile, error) {
	d := &demoFile{BaseURL: baseURL, TokenURL: baseURL + "/token", NATSURL: natsURL}
	keyDir := filepath.Join(dataDir, "keys")

	type pair struct{ enc, sig jose.KeyPair }
	pairs := make([]pair, len(demoPlaces))
	ids := make([]string, len(demoPlaces))
	var wg sync.WaitGroup
	errs := make([]error, len(demoPlaces))
	for i := range demoPlaces {
		ids[i] = uuid.NewString()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// RSA-4096 generation takes seconds; the places' keys are made in parallel.
			enc, err := jose.GenerateKeyPair(jose.Encryption, uuid.NewString(), demoPlaces[i].name)
			if err != nil {
				errs[i] = err
				return
			}
			sig, err := jose.GenerateKeyPair(jose.Signing, uuid.NewString(), demoPlaces[i].name)
			pairs[i], errs[i] = pair{enc, sig}, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("generate demo keys: %w", err)
	}

	// The manager rolls the destinations' keys through the API (POST
	// keys, PATCH encryptionKid); the receiver, whose credentials the
	// subscriber holds, only picks up.
	receiverScopes, managerScopes := []string{}, []string{}
	for i, p := range demoPlaces {
		id := ids[i]
		encFile := filepath.Join(keyDir, id+".encryption.jwk.json")
		sigFile := filepath.Join(keyDir, id+".signing.jwk.json")
		if err := writePrivateKey(encFile, pairs[i].enc); err != nil {
			return nil, err
		}
		if err := writePrivateKey(sigFile, pairs[i].sig); err != nil {
			return nil, err
		}
		encJSON, err := pairs[i].enc.PublicJSON()
		if err != nil {
			return nil, err
		}
		sigJSON, err := pairs[i].sig.PublicJSON()
		if err != nil {
			return nil, err
		}
		dest := store.Destination{
			ID:               id,
			Status:           store.StatusActive,
			Contact:          p.contact,
			EncryptionKID:    pairs[i].enc.Public.KeyID,
			SigningKID:       pairs[i].sig.Public.KeyID,
			MetadataVersions: []string{"1.0.0"},
			HomeRegion:       p.region()[len("DE"):],
		}
		var urns []string
		for _, key := range p.services {
			urn := "urn:de:fim:leika:leistung:" + key
			urns = append(urns, urn)
			dest.Services = append(dest.Services, store.Service{
				Identifier: urn,
				Regions:    []string{p.region()},
				SubmissionSchemas: []store.SubmissionSchema{{
					MimeType: "application/json", SchemaURI: "https://schema.fitko.de/fim/s00000000009_1.0.0.schema.json",
				}},
			})
		}
		keys := []store.Key{
			{DestinationID: id, KID: dest.EncryptionKID, Use: store.UseEncryption, JWK: encJSON},
			{DestinationID: id, KID: dest.SigningKID, Use: store.UseSigning, JWK: sigJSON},
		}
		if _, err := reg.CreateDestination(ctx, "dev", dest, keys); err != nil {
			return nil, fmt.Errorf("create demo destination %s: %w", p.name, err)
		}
		d.Destinations = append(d.Destinations, demoDestination{
			DestinationID: id, Name: p.name, Level: p.level, Region: p.region(), Services: urns,
			EncryptionKID: dest.EncryptionKID, EncryptionKeyFile: encFile,
			SigningKID: dest.SigningKID, SigningKeyFile: sigFile,
		})
		receiverScopes = append(receiverScopes, "subscribe:destination:"+id)
		managerScopes = append(managerScopes, "manage:destination:"+id)
	}

	for _, c := range []demoClient{
		{Role: "sender", Scopes: []string{"send:region:DE08"}},
		{Role: "receiver", Scopes: receiverScopes},
		{Role: "manager", Scopes: managerScopes},
	} {
		client, secret, err := reg.CreateClient(ctx, "dev", registry.ClientInput{Name: "demo " + c.Role, Scopes: c.Scopes})
		if err != nil {
			return nil, fmt.Errorf("create demo %s client: %w", c.Role, err)
		}
		c.ClientID, c.ClientSecret = client.ID, secret
		d.Clients = append(d.Clients, c)
	}
	return d, writeDemo(dataDir, d)
}

func writeDemo(dataDir string, d *demoFile) error {
	raw, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dataDir, "demo.json"), append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("write demo.json: %w", err)
	}
	return nil
}
