package storetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/store"
)

// errAbort is what update funcs return to abort a change.
var errAbort = errors.New("abort the change")

// destination returns a destination with every field set.
func destination(id string) store.Destination {
	return store.Destination{
		ID:     id,
		Status: store.StatusActive,
		Contact: store.ContactInformation{
			LegalName: "Stadt " + id,
			Address:   "Marktplatz 1, 79098 Freiburg im Breisgau",
			Phone:     "+49 761 2010",
			Email:     "poststelle@" + id + ".example",
			Unit:      "Bürgeramt",
		},
		Services: []store.Service{
			{
				Identifier: "urn:de:fim:leika:leistung:99050012104000",
				Regions:    []string{"DE083110000000", "DE08311"},
				SubmissionSchemas: []store.SubmissionSchema{
					{MimeType: "application/json", SchemaURI: "https://schema.fitko.de/fim/s00000114_1.0.schema.json"},
				},
				ValidFrom:  ptr(at(-24 * time.Hour)),
				ValidUntil: ptr(at(365 * 24 * time.Hour)),
			},
			{
				Identifier:        "urn:de:fim:leika:leistung:99107004018000",
				Regions:           []string{"DE08"},
				SubmissionSchemas: []store.SubmissionSchema{{MimeType: "application/xml", SchemaURI: "urn:xoev-de:xfall:standard:xbau_2.3"}},
			},
		},
		EncryptionKID:    id + "-enc-1",
		SigningKID:       id + "-sig-1",
		MetadataVersions: []string{"1.0.0", "1.2.0"},
		// Spacing and key order are kept as given.
		ReplyChannels:  []byte(`{"eMail": {"usePgp": false}, "deMail": {}}`),
		HomeRegion:     "083110000000",
		CallbackURL:    "https://fachverfahren." + id + ".example/callback",
		CallbackSecret: "callback-secret-of-" + id,
		CreatedAt:      at(0),
		UpdatedAt:      at(time.Minute),
	}
}

// key returns a key of destination destID with a JWK that names it.
func key(destID, kid string, use store.KeyUse, created time.Time) store.Key {
	op := "wrapKey"
	alg := "RSA-OAEP-256"
	if use == store.UseSigning {
		op, alg = "verify", "PS512"
	}
	return store.Key{
		DestinationID: destID,
		KID:           kid,
		Use:           use,
		JWK:           []byte(fmt.Sprintf(`{"kty":"RSA","kid":%q,"key_ops":[%q],"alg":%q,"e":"AQAB","n":"sXch"}`, kid, op, alg)),
		CreatedAt:     created,
	}
}

// keysOf returns the initial encryption and signing keys of destination d.
func keysOf(d store.Destination) []store.Key {
	return []store.Key{
		key(d.ID, d.EncryptionKID, store.UseEncryption, d.CreatedAt),
		key(d.ID, d.SigningKID, store.UseSigning, d.CreatedAt),
	}
}

// createDestination stores d with its initial keys.
func createDestination(t testing.TB, s store.Store, d store.Destination) []store.Key {
	t.Helper()
	keys := keysOf(d)
	must(t, "create destination "+d.ID, s.CreateDestination(context.Background(), "cli", d, keys))
	return keys
}

// auditOf returns the audit log of object, newest first.
func auditOf(t *testing.T, s store.Store, object string) []store.AuditEntry {
	t.Helper()
	a, err := s.AuditLog(context.Background(), object, store.Page{Limit: store.MaxPageLimit})
	must(t, "audit log of "+object, err)
	return a
}

// destinationAudit returns d's audit record.
func destinationAudit(t *testing.T, d store.Destination, keys []store.Key) []byte {
	t.Helper()
	b, err := d.AuditJSON(keys)
	must(t, "audit record", err)
	return b
}

// checkAudit fails the test unless e is the entry described and keeps no secret.
func checkAudit(t *testing.T, e store.AuditEntry, actor, action, object string, before, after []byte, start time.Time, secrets ...string) {
	t.Helper()
	if e.Actor != actor || e.Action != action || e.Object != object {
		t.Fatalf("audit entry %d: %s %s %s, want %s %s %s", e.ID, e.Actor, e.Action, e.Object, actor, action, object)
	}
	if e.ID <= 0 {
		t.Errorf("audit entry id %d, want positive", e.ID)
	}
	checkNow(t, "audit time", e.At, start)
	sameJSON(t, action+" before", e.Before, before)
	sameJSON(t, action+" after", e.After, after)
	if (len(before) == 0) != (len(e.Before) == 0) {
		t.Errorf("%s before = %q, want %q", action, e.Before, before)
	}
	for _, secret := range secrets {
		if bytes.Contains(e.Before, []byte(secret)) || bytes.Contains(e.After, []byte(secret)) {
			t.Errorf("%s audit entry keeps a secret: %s / %s", action, e.Before, e.After)
		}
	}
}

var destinationTests = []test{
	{"create and read back", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		start := time.Now()
		d := destination("d1")
		keys := createDestination(t, s, d)

		got, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		equal(t, "destination", got, d)
		gotKeys, err := s.Keys(ctx, "d1")
		must(t, "keys", err)
		equal(t, "keys", gotKeys, keys)

		a := auditOf(t, s, "destination:d1")
		if len(a) != 1 {
			t.Fatalf("%d audit entries, want 1", len(a))
		}
		checkAudit(t, a[0], "cli", "destination.create", "destination:d1", nil, destinationAudit(t, d, keys), start, d.CallbackSecret)
	}},
	{"sparse fields round-trip", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := store.Destination{ID: "sparse", Status: store.StatusCreated, CreatedAt: at(0), UpdatedAt: at(0)}
		must(t, "create", s.CreateDestination(ctx, "cli", d, nil))
		got, err := s.Destination(ctx, "sparse")
		must(t, "destination", err)
		equal(t, "destination", got, d)
		keys, err := s.Keys(ctx, "sparse")
		must(t, "keys", err)
		if len(keys) != 0 {
			t.Errorf("keys = %v, want none", keys)
		}
	}},
	{"create sets missing timestamps", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		start := time.Now()
		d := destination("d1")
		d.CreatedAt, d.UpdatedAt = time.Time{}, time.Time{}
		k := key("d1", d.EncryptionKID, store.UseEncryption, time.Time{})
		must(t, "create", s.CreateDestination(ctx, "cli", d, []store.Key{k}))
		got, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		checkNow(t, "created", got.CreatedAt, start)
		if !got.UpdatedAt.Equal(got.CreatedAt) {
			t.Errorf("updated %v, want created %v", got.UpdatedAt, got.CreatedAt)
		}
		gk, err := s.Key(ctx, "d1", k.KID)
		must(t, "key", err)
		checkNow(t, "key created", gk.CreatedAt, start)
	}},
	{"times are kept to the microsecond in UTC", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		berlin := time.FixedZone("CET", 3600)
		d.CreatedAt = time.Date(2025, 1, 2, 3, 4, 5, 123456789, berlin)
		d.UpdatedAt = d.CreatedAt
		must(t, "create", s.CreateDestination(ctx, "cli", d, nil))
		got, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		want := time.Date(2025, 1, 2, 2, 4, 5, 123456000, time.UTC)
		equal(t, "created", got.CreatedAt, want)
	}},
	{"duplicate id conflicts", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createDestination(t, s, destination("d1"))
		d := destination("d1")
		d.Contact.LegalName = "other"
		err := s.CreateDestination(ctx, "cli", d, []store.Key{key("d1", "fresh-kid", store.UseEncryption, t0)})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create again: %v, want ErrConflict", err)
		}
		got, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		equal(t, "destination", got, destination("d1"))
		if _, err := s.Key(ctx, "d1", "fresh-kid"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("key of failed create: %v, want ErrNotFound", err)
		}
		if a := auditOf(t, s, "destination:d1"); len(a) != 1 {
			t.Errorf("%d audit entries, want 1", len(a))
		}
	}},
	{"duplicate kid conflicts and leaves nothing", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createDestination(t, s, destination("d1"))
		d := destination("d2")
		keys := []store.Key{
			key("d2", "d2-enc-1", store.UseEncryption, t0),
			key("d2", "d1-sig-1", store.UseSigning, t0), // kids are unique across destinations
		}
		if err := s.CreateDestination(ctx, "cli", d, keys); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create with taken kid: %v, want ErrConflict", err)
		}
		if _, err := s.Destination(ctx, "d2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("destination of failed create: %v, want ErrNotFound", err)
		}
		if _, err := s.Key(ctx, "d2", "d2-enc-1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("key of failed create: %v, want ErrNotFound", err)
		}
		if a := auditOf(t, s, "destination:d2"); len(a) != 0 {
			t.Errorf("failed create left %d audit entries", len(a))
		}
	}},
	{"unknown destination is not found", func(t *testing.T, s store.Store) {
		if _, err := s.Destination(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("destination: %v, want ErrNotFound", err)
		}
	}},
	{"list pages by id with total", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		ids := []string{"d5", "d2", "d7", "d1", "d4", "d6", "d3"}
		for _, id := range ids {
			createDestination(t, s, destination(id))
		}
		for _, tc := range []struct {
			page store.Page
			want []string
		}{
			{store.Page{}, []string{"d1", "d2", "d3", "d4", "d5", "d6", "d7"}},
			{store.Page{Limit: 3}, []string{"d1", "d2", "d3"}},
			{store.Page{Limit: 3, Offset: 3}, []string{"d4", "d5", "d6"}},
			{store.Page{Limit: 3, Offset: 6}, []string{"d7"}},
			{store.Page{Limit: 3, Offset: 7}, nil},
			{store.Page{Limit: 1000, Offset: -5}, []string{"d1", "d2", "d3", "d4", "d5", "d6", "d7"}},
		} {
			t.Run(fmt.Sprintf("limit %d offset %d", tc.page.Limit, tc.page.Offset), func(t *testing.T) {
				list, total, err := s.Destinations(ctx, tc.page)
				must(t, "destinations", err)
				if total != len(ids) {
					t.Errorf("total %d, want %d", total, len(ids))
				}
				var got []string
				for _, d := range list {
					got = append(got, d.ID)
					equal(t, "listed "+d.ID, d, destination(d.ID))
				}
				equal(t, "ids", got, tc.want)
			})
		}
	}},
	{"update writes back and audits before and after", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		keys := createDestination(t, s, d)
		start := time.Now()
		got, err := s.UpdateDestination(ctx, "admin-client", "d1", func(u *store.Destination) error {
			u.Status = store.StatusInactive
			u.Services = append(u.Services, store.Service{Identifier: "urn:de:fim:leika:leistung:99000000000000", Regions: []string{"DE"}})
			u.CallbackSecret = "rotated-secret"
			return nil
		})
		must(t, "update", err)
		want := d
		want.Status = store.StatusInactive
		want.Services = append(slices.Clone(d.Services), store.Service{Identifier: "urn:de:fim:leika:leistung:99000000000000", Regions: []string{"DE"}})
		want.CallbackSecret = "rotated-secret"
		checkNow(t, "updated", got.UpdatedAt, start)
		want.UpdatedAt = got.UpdatedAt
		equal(t, "returned", got, want)
		read, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		equal(t, "read back", read, want)

		a := auditOf(t, s, "destination:d1")
		if len(a) != 2 {
			t.Fatalf("%d audit entries, want 2", len(a))
		}
		// The secret's change shows, the secret does not.
		after, err := want.AuditUpdateJSON(keys, true)
		must(t, "audit record", err)
		checkAudit(t, a[0], "admin-client", "destination.update", "destination:d1",
			destinationAudit(t, d, keys), after, start, d.CallbackSecret, "rotated-secret")
	}},
	{"update func error aborts", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		createDestination(t, s, d)
		_, err := s.UpdateDestination(ctx, "cli", "d1", func(u *store.Destination) error {
			u.Status = store.StatusDecommissioned
			u.Services = nil
			return fmt.Errorf("check: %w", errAbort)
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("update: %v, want the update func's error", err)
		}
		got, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		equal(t, "destination", got, d)
		if a := auditOf(t, s, "destination:d1"); len(a) != 1 {
			t.Errorf("%d audit entries, want only the create", len(a))
		}
	}},
	{"update of unknown destination is not found", func(t *testing.T, s store.Store) {
		called := false
		_, err := s.UpdateDestination(context.Background(), "cli", "nope", func(*store.Destination) error {
			called = true
			return nil
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update: %v, want ErrNotFound", err)
		}
		if called {
			t.Error("update func called for an unknown destination")
		}
	}},
	{"update cannot change the id or creation time", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		createDestination(t, s, d)
		if _, err := s.UpdateDestination(ctx, "cli", "d1", func(u *store.Destination) error {
			u.ID = "d2"
			return nil
		}); err == nil {
			t.Fatal("update changed the id")
		}
		if _, err := s.Destination(ctx, "d2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("renamed destination: %v, want ErrNotFound", err)
		}
		got, err := s.UpdateDestination(ctx, "cli", "d1", func(u *store.Destination) error {
			u.CreatedAt = at(time.Hour)
			return nil
		})
		must(t, "update", err)
		equal(t, "created", got.CreatedAt, d.CreatedAt)
		read, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		equal(t, "read back", read, got)
	}},
	{"concurrent updates lose nothing", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		d.Services = nil
		createDestination(t, s, d)
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				_, err := s.UpdateDestination(ctx, fmt.Sprintf("actor-%d", i), "d1", func(u *store.Destination) error {
					u.Services = append(u.Services, store.Service{Identifier: fmt.Sprintf("svc-%02d", i), Regions: []string{"DE"}})
					return nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			must(t, "concurrent update", err)
		}
		got, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		var ids []string
		for _, svc := range got.Services {
			ids = append(ids, svc.Identifier)
		}
		slices.Sort(ids)
		var want []string
		for i := range n {
			want = append(want, fmt.Sprintf("svc-%02d", i))
		}
		equal(t, "services", ids, want)
		if a := auditOf(t, s, "destination:d1"); len(a) != n+1 {
			t.Errorf("%d audit entries, want %d", len(a), n+1)
		}
	}},
}

var keyTests = []test{
	{"add key keeps the current key", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		keys := createDestination(t, s, d)
		start := time.Now()
		k := key("d1", "d1-enc-2", store.UseEncryption, at(time.Hour))
		must(t, "add key", s.AddKey(ctx, "cli", k))

		got, err := s.Key(ctx, "d1", "d1-enc-2")
		must(t, "key", err)
		equal(t, "key", got, k)
		all, err := s.Keys(ctx, "d1")
		must(t, "keys", err)
		equal(t, "keys", all, append(slices.Clone(keys), k))
		read, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		equal(t, "destination", read, d)

		a := auditOf(t, s, "destination:d1")
		if len(a) != 2 {
			t.Fatalf("%d audit entries, want 2", len(a))
		}
		checkAudit(t, a[0], "cli", "key.add", "destination:d1",
			destinationAudit(t, d, keys), destinationAudit(t, d, all), start, d.CallbackSecret)
	}},
	{"add key errors", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createDestination(t, s, destination("d1"))
		createDestination(t, s, destination("d2"))
		for _, tc := range []struct {
			name string
			key  store.Key
			want error
		}{
			{"unknown destination", key("nope", "new-kid", store.UseEncryption, t0), store.ErrNotFound},
			{"kid of the same destination", key("d1", "d1-enc-1", store.UseEncryption, t0), store.ErrConflict},
			{"kid of another destination", key("d1", "d2-sig-1", store.UseSigning, t0), store.ErrConflict},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := s.AddKey(ctx, "cli", tc.key); !errors.Is(err, tc.want) {
					t.Fatalf("add key: %v, want %v", err, tc.want)
				}
			})
		}
		if a := auditOf(t, s, ""); len(a) != 2 {
			t.Errorf("%d audit entries, want only the two creates", len(a))
		}
		keys, err := s.Keys(ctx, "d1")
		must(t, "keys", err)
		equal(t, "keys", keys, keysOf(destination("d1")))
	}},
	{"invalid JWK is refused", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createDestination(t, s, destination("d1"))
		k := key("d1", "d1-enc-2", store.UseEncryption, t0)
		k.JWK = []byte(`{"kty":`)
		if err := s.AddKey(ctx, "cli", k); err == nil {
			t.Fatal("added a key that is not JSON")
		}
		if _, err := s.Key(ctx, "d1", k.KID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("key: %v, want ErrNotFound", err)
		}
	}},
	{"key lookups", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		keys := createDestination(t, s, destination("d1"))
		createDestination(t, s, destination("d2"))
		for _, tc := range []struct {
			dest, kid string
			want      error
		}{
			{"d1", "d1-enc-1", nil},
			{"d1", "d1-sig-1", nil},
			{"d1", "nope", store.ErrNotFound},
			{"d1", "d2-enc-1", store.ErrNotFound},
			{"nope", "d1-enc-1", store.ErrNotFound},
		} {
			t.Run(tc.dest+"/"+tc.kid, func(t *testing.T) {
				got, err := s.Key(ctx, tc.dest, tc.kid)
				if !errors.Is(err, tc.want) {
					t.Fatalf("key: %v, want %v", err, tc.want)
				}
				if err == nil {
					i := slices.IndexFunc(keys, func(k store.Key) bool { return k.KID == tc.kid })
					equal(t, "key", got, keys[i])
				}
			})
		}
		none, err := s.Keys(ctx, "nope")
		must(t, "keys of unknown destination", err)
		if len(none) != 0 {
			t.Errorf("keys of unknown destination: %v", none)
		}
	}},
	{"keys list oldest first", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		must(t, "create", s.CreateDestination(ctx, "cli", d, []store.Key{
			key("d1", "d1-enc-1", store.UseEncryption, at(2*time.Hour)),
			key("d1", "d1-sig-1", store.UseSigning, at(0)),
		}))
		must(t, "add", s.AddKey(ctx, "cli", key("d1", "k-a", store.UseEncryption, at(time.Hour))))
		must(t, "add", s.AddKey(ctx, "cli", key("d1", "k-b", store.UseEncryption, at(time.Hour))))
		keys, err := s.Keys(ctx, "d1")
		must(t, "keys", err)
		var kids []string
		for _, k := range keys {
			kids = append(kids, k.KID)
		}
		// Equal times keep the order they were added in.
		equal(t, "kids", kids, []string{"d1-sig-1", "k-a", "k-b", "d1-enc-1"})
	}},
	{"roll key", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		keys := createDestination(t, s, d)
		for _, tc := range []struct {
			use   store.KeyUse
			kid   string
			until time.Time
		}{
			{store.UseEncryption, "d1-enc-2", at(48 * time.Hour)},
			{store.UseSigning, "d1-sig-2", at(72 * time.Hour)},
			{store.UseEncryption, "d1-enc-3", at(96 * time.Hour)},
		} {
			t.Run(tc.kid, func(t *testing.T) {
				before, err := s.Destination(ctx, "d1")
				must(t, "destination", err)
				keysBefore, err := s.Keys(ctx, "d1")
				must(t, "keys", err)
				start := time.Now()
				k := key("d1", tc.kid, tc.use, at(time.Hour))
				got, err := s.RollKey(ctx, "operator", k, tc.until)
				must(t, "roll", err)

				want := before
				prev := before.EncryptionKID
				if tc.use == store.UseEncryption {
					want.EncryptionKID = tc.kid
				} else {
					prev = before.SigningKID
					want.SigningKID = tc.kid
				}
				checkNow(t, "updated", got.UpdatedAt, start)
				want.UpdatedAt = got.UpdatedAt
				equal(t, "returned", got, want)
				read, err := s.Destination(ctx, "d1")
				must(t, "destination", err)
				equal(t, "read back", read, want)

				old, err := s.Key(ctx, "d1", prev)
				must(t, "previous key", err)
				equal(t, "previous key valid until", old.ValidUntil, &tc.until)
				nk, err := s.Key(ctx, "d1", tc.kid)
				must(t, "new key", err)
				equal(t, "new key", nk, k)

				keysAfter, err := s.Keys(ctx, "d1")
				must(t, "keys", err)
				if len(keysAfter) != len(keysBefore)+1 {
					t.Fatalf("%d keys after roll, want %d", len(keysAfter), len(keysBefore)+1)
				}
				a := auditOf(t, s, "destination:d1")
				checkAudit(t, a[0], "operator", "key.roll", "destination:d1",
					destinationAudit(t, before, keysBefore), destinationAudit(t, want, keysAfter), start, d.CallbackSecret)
			})
		}
		// The first keys: the encryption key limited by the first roll, the
		// signing key by the second.
		first, err := s.Key(ctx, "d1", keys[0].KID)
		must(t, "first key", err)
		equal(t, "first key valid until", first.ValidUntil, ptr(at(48*time.Hour)))
		if first.ValidAt(at(49*time.Hour)) || !first.ValidAt(at(47*time.Hour)) {
			t.Error("first key's validity does not end at its limit")
		}
	}},
	{"roll key without a previous key", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		d.SigningKID = ""
		must(t, "create", s.CreateDestination(ctx, "cli", d, []store.Key{key("d1", d.EncryptionKID, store.UseEncryption, t0)}))
		got, err := s.RollKey(ctx, "cli", key("d1", "d1-sig-1", store.UseSigning, t0), at(time.Hour))
		must(t, "roll", err)
		if got.SigningKID != "d1-sig-1" || got.EncryptionKID != d.EncryptionKID {
			t.Errorf("kids after roll: enc %q sig %q", got.EncryptionKID, got.SigningKID)
		}
		enc, err := s.Key(ctx, "d1", d.EncryptionKID)
		must(t, "encryption key", err)
		if enc.ValidUntil != nil {
			t.Errorf("rolling the signing key limited the encryption key to %v", enc.ValidUntil)
		}
	}},
	{"roll key errors change nothing", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		d := destination("d1")
		keys := createDestination(t, s, d)
		createDestination(t, s, destination("d2"))
		for _, tc := range []struct {
			name string
			key  store.Key
			want error
		}{
			{"unknown destination", key("nope", "new-kid", store.UseEncryption, t0), store.ErrNotFound},
			{"taken kid", key("d1", "d2-enc-1", store.UseEncryption, t0), store.ErrConflict},
			{"current kid", key("d1", "d1-enc-1", store.UseEncryption, t0), store.ErrConflict},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := s.RollKey(ctx, "cli", tc.key, at(time.Hour)); !errors.Is(err, tc.want) {
					t.Fatalf("roll: %v, want %v", err, tc.want)
				}
			})
		}
		got, err := s.Destination(ctx, "d1")
		must(t, "destination", err)
		equal(t, "destination", got, d)
		all, err := s.Keys(ctx, "d1")
		must(t, "keys", err)
		equal(t, "keys", all, keys)
		if a := auditOf(t, s, ""); len(a) != 2 {
			t.Errorf("%d audit entries, want only the two creates", len(a))
		}
	}},
}

// client returns a client with every field set.
func client(id string) store.Client {
	return store.Client{
		ID:         id,
		Name:       "Portal " + id,
		SecretHash: []byte("$argon2id$v=19$m=65536,t=3,p=4$" + id),
		Scopes:     []string{"send:region:DE08", "send:service:urn:de:fim:leika:leistung:99050012104000"},
		Disabled:   false,
		CreatedAt:  at(0),
	}
}

var clientTests = []test{
	{"update writes the change and its audit entry", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		start := time.Now()
		c := client("c1")
		must(t, "create", s.CreateClient(ctx, "cli", c))
		got, err := s.UpdateClient(ctx, "erika", "c1", "client.disable", func(c *store.Client) error {
			c.Disabled = true
			c.SecretHash = []byte("another hash")
			return nil
		})
		must(t, "update", err)
		want := c
		want.Disabled, want.SecretHash = true, []byte("another hash")
		equal(t, "update's answer", got, want)
		read, err := s.Client(ctx, "c1")
		must(t, "client", err)
		equal(t, "client", read, want)
		a := auditOf(t, s, "client:c1")
		if len(a) != 2 {
			t.Fatalf("%d audit entries, want 2", len(a))
		}
		checkAudit(t, a[0], "erika", "client.disable", "client:c1", c.AuditJSON(), want.AuditJSON(), start, "another hash")
	}},
	{"a refused update changes nothing", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		must(t, "create", s.CreateClient(ctx, "cli", client("c1")))
		refused := errors.New("refused")
		if _, err := s.UpdateClient(ctx, "erika", "c1", "client.disable", func(c *store.Client) error {
			c.Disabled = true
			return refused
		}); !errors.Is(err, refused) {
			t.Fatalf("update: %v, want the update's error", err)
		}
		got, err := s.Client(ctx, "c1")
		must(t, "client", err)
		equal(t, "client", got, client("c1"))
		if a := auditOf(t, s, "client:c1"); len(a) != 1 {
			t.Errorf("%d audit entries, want 1", len(a))
		}
		if _, err := s.UpdateClient(ctx, "erika", "nobody", "client.disable", func(*store.Client) error { return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update of an unknown client: %v, want ErrNotFound", err)
		}
	}},
	{"create and read back", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		start := time.Now()
		c := client("c1")
		must(t, "create", s.CreateClient(ctx, "cli", c))
		got, err := s.Client(ctx, "c1")
		must(t, "client", err)
		equal(t, "client", got, c)

		a := auditOf(t, s, "client:c1")
		if len(a) != 1 {
			t.Fatalf("%d audit entries, want 1", len(a))
		}
		checkAudit(t, a[0], "cli", "client.create", "client:c1", nil, c.AuditJSON(), start,
			string(c.SecretHash), base64.StdEncoding.EncodeToString(c.SecretHash))
	}},
	{"sparse fields round-trip", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		start := time.Now()
		c := store.Client{ID: "bare", Disabled: true}
		must(t, "create", s.CreateClient(ctx, "cli", c))
		got, err := s.Client(ctx, "bare")
		must(t, "client", err)
		checkNow(t, "created", got.CreatedAt, start)
		c.CreatedAt = got.CreatedAt
		equal(t, "client", got, c)
	}},
	{"duplicate id conflicts", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		must(t, "create", s.CreateClient(ctx, "cli", client("c1")))
		c := client("c1")
		c.Name = "other"
		if err := s.CreateClient(ctx, "cli", c); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create again: %v, want ErrConflict", err)
		}
		got, err := s.Client(ctx, "c1")
		must(t, "client", err)
		equal(t, "client", got, client("c1"))
		if a := auditOf(t, s, "client:c1"); len(a) != 1 {
			t.Errorf("%d audit entries, want 1", len(a))
		}
	}},
	{"unknown client is not found", func(t *testing.T, s store.Store) {
		if _, err := s.Client(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("client: %v, want ErrNotFound", err)
		}
	}},
	{"list by id", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		none, err := s.Clients(ctx)
		must(t, "clients", err)
		if len(none) != 0 {
			t.Fatalf("clients of an empty store: %v", none)
		}
		for _, id := range []string{"portal-b", "portal-c", "portal-a"} {
			must(t, "create", s.CreateClient(ctx, "cli", client(id)))
		}
		got, err := s.Clients(ctx)
		must(t, "clients", err)
		equal(t, "clients", got, []store.Client{client("portal-a"), client("portal-b"), client("portal-c")})
	}},
}

var auditTests = []test{
	{"an operator's act", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		before := json.RawMessage(`{"seq":7,"reason":"callback-failed"}`)
		must(t, "audit", s.Audit(ctx, store.AuditEntry{Actor: "cli", Action: "dead-letter.purge", Object: "dead-letter:7", Before: before}))
		got := auditOf(t, s, "dead-letter:7")
		if len(got) != 1 {
			t.Fatalf("%d entries, want 1", len(got))
		}
		e := got[0]
		if e.Actor != "cli" || e.Action != "dead-letter.purge" || e.ID == 0 || e.At.IsZero() || e.After != nil {
			t.Errorf("entry %+v", e)
		}
		var b, w any
		must(t, "before", json.Unmarshal(e.Before, &b))
		must(t, "want", json.Unmarshal(before, &w))
		equal(t, "before", b, w)
	}},
	{"newest first, filtered by object, paged", func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createDestination(t, s, destination("d1"))                              // 1
		must(t, "client", s.CreateClient(ctx, "cli", client("c1")))             // 2
		createDestination(t, s, destination("d2"))                              // 3
		must(t, "add", s.AddKey(ctx, "cli", key("d1", "k2", "encryption", t0))) // 4
		_, err := s.RollKey(ctx, "cli", key("d2", "k3", "signing", t0), t0)     // 5
		must(t, "roll", err)
		_, err = s.UpdateDestination(ctx, "cli", "d1", func(*store.Destination) error { return nil }) // 6
		must(t, "update", err)

		actions := func(a []store.AuditEntry) []string {
			var out []string
			for _, e := range a {
				out = append(out, e.Action+" "+e.Object)
			}
			return out
		}
		all := auditOf(t, s, "")
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID || all[i].At.After(all[i-1].At) {
				t.Errorf("entry %d (id %d, %v) not older than entry %d (id %d, %v)", i, all[i].ID, all[i].At, i-1, all[i-1].ID, all[i-1].At)
			}
		}
		for _, tc := range []struct {
			object string
			page   store.Page
			want   []string
		}{
			{"", store.Page{}, []string{
				"destination.update destination:d1", "key.roll destination:d2", "key.add destination:d1",
				"destination.create destination:d2", "client.create client:c1", "destination.create destination:d1",
			}},
			{"", store.Page{Limit: 2, Offset: 1}, []string{"key.roll destination:d2", "key.add destination:d1"}},
			{"", store.Page{Limit: 2, Offset: 6}, nil},
			{"destination:d1", store.Page{}, []string{"destination.update destination:d1", "key.add destination:d1", "destination.create destination:d1"}},
			{"destination:d1", store.Page{Limit: 1, Offset: 2}, []string{"destination.create destination:d1"}},
			{"destination:d2", store.Page{}, []string{"key.roll destination:d2", "destination.create destination:d2"}},
			{"client:c1", store.Page{}, []string{"client.create client:c1"}},
			{"destination:d", store.Page{}, nil},
		} {
			t.Run(fmt.Sprintf("%q limit %d offset %d", tc.object, tc.page.Limit, tc.page.Offset), func(t *testing.T) {
				got, err := s.AuditLog(ctx, tc.object, tc.page)
				must(t, "audit log", err)
				equal(t, "entries", actions(got), tc.want)
				all, err := s.AuditLog(ctx, tc.object, store.Page{Limit: store.MaxPageLimit})
				must(t, "audit log", err)
				n, err := s.AuditCount(ctx, tc.object)
				must(t, "audit count", err)
				equal(t, "count", n, len(all))
			})
		}
	}},
}
