package registry_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/registry"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// cutStore ends the request's context once the destination is stored, as
// a client that hangs up just then does.
type cutStore struct {
	registry.Store
	cut context.CancelFunc
}

func (s cutStore) CreateDestination(ctx context.Context, actor string, d store.Destination, keys []store.Key) error {
	err := s.Store.CreateDestination(ctx, actor, d, keys)
	s.cut()
	return err
}

// announced records the destinations announced.
type announced struct{ ids []string }

func (a *announced) LockWrites(context.Context) (func(), error)        { return func() {}, nil }
func (a *announced) Prepare(context.Context) error                     { return nil }
func (a *announced) Check(context.Context, store.Destination) error    { return nil }
func (a *announced) CheckRegion(context.Context, string, string) error { return nil }
func (a *announced) PublishReference(context.Context) (uint64, error)  { return 1, nil }
func (a *announced) PublishDestination(ctx context.Context, d store.Destination) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	a.ids = append(a.ids, d.ID)
	return 1, nil
}

// TestStoredIsAnnounced: a destination stored is announced to the other
// processes even when the request that created it ended just after.
func TestStoredIsAnnounced(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	routes := &announced{}
	reg, err := registry.New(registry.Config{Store: cutStore{flowtest.OpenSQLite(t), cancel}, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	kp := flowtest.Signer(t)
	pub, err := kp.PublicJSON()
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	d := store.Destination{
		ID: id, Status: store.StatusActive,
		Contact:       store.ContactInformation{LegalName: "Gemeinde Auggen", Address: "Rathaus", Phone: "+49 7631 0", Email: "post@auggen.example"},
		EncryptionKID: "enc-" + id, SigningKID: "sig-" + id, MetadataVersions: []string{"1.0.0"}, HomeRegion: "083155012004",
		Services: []store.Service{{
			Identifier: "urn:de:fim:leika:leistung:99050012000000", Regions: []string{"DE083155012004"},
			SubmissionSchemas: []store.SubmissionSchema{{MimeType: "application/json", SchemaURI: "https://schema.fitko.de/fim/s00000096_1.0.schema.json"}},
		}},
	}
	keys := []store.Key{
		{DestinationID: id, KID: d.EncryptionKID, Use: store.UseEncryption, JWK: pub},
		{DestinationID: id, KID: d.SigningKID, Use: store.UseSigning, JWK: pub},
	}
	c, err := reg.CreateDestination(ctx, "test", d, keys)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(routes.ids) != 1 || routes.ids[0] != id || c.Revision == 0 {
		t.Errorf("announced %v (revision %d), want %s", routes.ids, c.Revision, id)
	}
}
