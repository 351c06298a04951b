// Package registry holds the operator's registry changes, each one
// operation: create or change a destination, add or roll a key, create a
// client, import reference data. An operation validates its input, checks
// a destination's routes against every other destination's (the same
// service and region at an overlapping time is a conflict), writes the
// store, which records the audit entry in the same transaction, and
// announces the change to every process following the registry. The admin
// API, FIT-Connect's destination endpoints, the operator commands and the
// dev command's demo all call it, so each change is made one way.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routing"
	"github.com/amtsbote/amtsbote/pkg/scope"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// DefaultKeyGrace is how long a rolled-over key stays valid, so that
// submissions encrypted to it before the roll still arrive.
const DefaultKeyGrace = 7 * 24 * time.Hour

// announceWait bounds how long a write waits for its announcement to come
// back from the bus, so that the writer's next request routes with it.
const announceWait = 5 * time.Second

// Store is the part of the store a Registry writes.
type Store interface {
	CreateDestination(ctx context.Context, actor string, d store.Destination, keys []store.Key) error
	UpdateDestination(ctx context.Context, actor, id string, update func(*store.Destination) error) (store.Destination, error)
	Destination(ctx context.Context, id string) (store.Destination, error)
	Keys(ctx context.Context, destinationID string) ([]store.Key, error)
	AddKey(ctx context.Context, actor string, k store.Key) error
	RollKey(ctx context.Context, actor string, k store.Key, previousValidUntil time.Time) (store.Destination, error)
	CreateClient(ctx context.Context, actor string, c store.Client) error
	UpdateClient(ctx context.Context, actor, id, action string, update func(*store.Client) error) (store.Client, error)
}

// Reference is the part of the store reference imports write.
type Reference interface {
	ImportAreas(ctx context.Context, actor string, d *ars.Directory) (store.AreaImport, error)
	ImportCatalogue(ctx context.Context, actor string, services []leika.Service) (store.CatalogueImport, error)
	ImportPostcodes(ctx context.Context, actor string, codes []ars.PostalCode) (store.PostcodeImport, error)
}

// Routes is the routing registry a process follows (routesync.Syncer):
// the table conflicts are checked against, and the announcement of
// changes to every process.
type Routes interface {
	// LockWrites orders destination writes across processes: it returns
	// once no other process writes, and unlock lets the next one on.
	LockWrites(ctx context.Context) (unlock func(), err error)
	// Prepare brings the table up to the latest revision it can reach.
	Prepare(ctx context.Context) error
	// Check reports a conflict of d's routes with another destination's.
	Check(ctx context.Context, d store.Destination) error
	// CheckRegion reports, as a 422 problem on field, a region the
	// current area directory does not hold; nil without a directory.
	CheckRegion(ctx context.Context, field, region string) error
	// PublishDestination announces d's stored state; it returns the revision.
	PublishDestination(ctx context.Context, d store.Destination) (uint64, error)
	ReferenceAnnouncer
}

// ReferenceAnnouncer tells every process of a reference import.
type ReferenceAnnouncer interface {
	// PublishReference announces a reference import; it returns the revision.
	PublishReference(ctx context.Context) (uint64, error)
}

// Config is what a Registry needs. Store is required.
type Config struct {
	Store Store
	// Reference is needed by the imports.
	Reference Reference
	// Routes checks conflicts and announces changes; nil does neither.
	Routes Routes
	// References announces imports where no Routes are followed (an
	// operator command); default Routes.
	References ReferenceAnnouncer
	// KeyGrace is how long a rolled-over key stays valid (default
	// DefaultKeyGrace).
	KeyGrace time.Duration
	// Logger receives failed announcements (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// CallbackAllow are the networks besides the public internet that a
	// destination's callback may go to (store.CheckNewCallback).
	CallbackAllow []netip.Prefix
}

// Registry performs registry changes. It is safe for concurrent use.
type Registry struct {
	store    Store
	ref      Reference
	routes   Routes
	refs     ReferenceAnnouncer
	keyGrace time.Duration
	log      *slog.Logger
	now      func() time.Time
	allow    []netip.Prefix
	// writes orders this process's destination writes, routes.LockWrites
	// those of all processes: each one's routes are checked against the
	// table after the write before it was announced, so two at once cannot
	// both claim a service and region.
	writes sync.Mutex
}

// New checks cfg.
func New(cfg Config) (*Registry, error) {
	if cfg.Store == nil {
		return nil, errors.New("new registry: no store")
	}
	if cfg.KeyGrace < 0 {
		return nil, fmt.Errorf("new registry: key grace %s: negative", cfg.KeyGrace)
	}
	r := &Registry{store: cfg.Store, ref: cfg.Reference, routes: cfg.Routes, refs: cfg.References, keyGrace: cfg.KeyGrace, log: cfg.Logger, now: cfg.Now, allow: cfg.CallbackAllow}
	if r.refs == nil && r.routes != nil {
		r.refs = r.routes
	}
	if r.keyGrace == 0 {
		r.keyGrace = DefaultKeyGrace
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Change is what a destination change left: the destination as stored
// and the registry revision that announced it (0 when it was not
// announced).
type Change struct {
	Destination store.Destination
	Revision    uint64
}

// CreateDestination stores d with its two keys (as ParseDestination
// returns them) and announces its routes. A destination with d's id, or a
// key with one of the kids, is a 409; so is a route that conflicts with
// another destination's (extension conflictingDestinationId).
func (r *Registry) CreateDestination(ctx context.Context, actor string, d store.Destination, keys []store.Key) (Change, error) {
	now := r.now()
	for i := range keys {
		if keys[i].CreatedAt.IsZero() {
			keys[i].CreatedAt = now
		}
	}
	if _, err := r.store.Destination(ctx, d.ID); err == nil {
		return Change{}, problem.Conflict("destinationId", fmt.Sprintf("destination %s exists", d.ID))
	} else if !errors.Is(err, store.ErrNotFound) {
		return Change{}, fmt.Errorf("read destination %s: %w", d.ID, err)
	}
	if err := d.Validate(d.CallbackURL != "" || d.CallbackSecret != ""); err != nil {
		return Change{}, err
	}
	if d.CallbackURL != "" {
		if err := store.CheckNewCallback(d.CallbackURL, r.allow); err != nil {
			return Change{}, err
		}
	}
	unlock, err := r.lockWrites(ctx)
	if err != nil {
		return Change{}, err
	}
	defer unlock()
	if err := r.checkRegions(ctx, d, nil); err != nil {
		return Change{}, err
	}
	if err := r.check(ctx, d); err != nil {
		return Change{}, err
	}
	if err := r.store.CreateDestination(ctx, actor, d, keys); err != nil {
		if errors.Is(err, store.ErrConflict) {
			kids := make([]string, 0, len(keys))
			for _, k := range keys {
				kids = append(kids, k.KID)
			}
			return Change{}, problem.Conflict("destinationId", fmt.Sprintf("destination %s or one of its key ids (%s) exists", d.ID, strings.Join(kids, ", ")))
		}
		return Change{}, fmt.Errorf("create destination: %w", err)
	}
	return r.announce(ctx, d.ID)
}

// UpdateDestination applies change to destination id inside the store's
// read-modify-write, validates the result, checks its routes and that
// encryptionKid names a valid encryption key of the destination, and
// announces the new state. change reports whether a callback was given,
// so its secret is validated. An unknown destination is a 404 problem.
func (r *Registry) UpdateDestination(ctx context.Context, actor, id string, change func(*store.Destination) (withCallback bool, err error), opts ...UpdateOption) (Change, error) {
	var o updateOptions
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := r.store.Destination(ctx, id); errors.Is(err, store.ErrNotFound) {
		return Change{}, problem.DestinationNotFound(id)
	} else if err != nil {
		return Change{}, fmt.Errorf("read destination %s: %w", id, err)
	}
	keys, err := r.store.Keys(ctx, id)
	if err != nil {
		return Change{}, fmt.Errorf("list keys of %s: %w", id, err)
	}
	unlock, err := r.lockWrites(ctx)
	if err != nil {
		return Change{}, err
	}
	defer unlock()
	now := r.now()
	_, err = r.store.UpdateDestination(ctx, actor, id, func(d *store.Destination) error {
		from := d.Status
		before := regionsOf(*d)
		area, served := areaOf(*d), servedOf(*d)
		callback := d.CallbackURL
		withCallback, err := change(d)
		if err != nil {
			return err
		}
		if err := CheckTransition(from, d.Status); err != nil {
			return err
		}
		if err := d.Validate(withCallback); err != nil {
			return err
		}
		// A callback URL kept as it was is not checked again: the
		// networks allowed may have changed since.
		if d.CallbackURL != "" && d.CallbackURL != callback {
			if err := store.CheckNewCallback(d.CallbackURL, r.allow); err != nil {
				return err
			}
		}
		if err := r.checkRegions(ctx, *d, before); err != nil {
			return err
		}
		if o.withinArea {
			if err := checkArea(*d, area, served); err != nil {
				return err
			}
		}
		if err := r.check(ctx, *d); err != nil {
			return err
		}
		for _, k := range keys {
			if k.KID == d.EncryptionKID {
				if k.Use != store.UseEncryption {
					return problem.Invalid("encryptionKid", fmt.Sprintf("key %s is a %s key", k.KID, k.Use))
				}
				if !k.ValidAt(now) {
					return problem.Invalid("encryptionKid", fmt.Sprintf("key %s is no longer valid", k.KID))
				}
				return nil
			}
		}
		return problem.Invalid("encryptionKid", fmt.Sprintf("destination %s has no key %q; add it first", id, d.EncryptionKID))
	})
	if errors.Is(err, store.ErrNotFound) {
		return Change{}, problem.DestinationNotFound(id)
	}
	if err != nil {
		return Change{}, err
	}
	return r.announce(ctx, id)
}

// SetStatus moves destination id to status.
func (r *Registry) SetStatus(ctx context.Context, actor, id string, status store.DestinationStatus) (Change, error) {
	return r.UpdateDestination(ctx, actor, id, func(d *store.Destination) (bool, error) {
		d.Status = status
		return false, nil
	})
}

// CheckTransition refuses leaving decommissioned, returning to created and
// deactivating a destination that was never active.
func CheckTransition(from, to store.DestinationStatus) error {
	switch {
	case from == to:
		return nil
	case from == store.StatusDecommissioned:
		return problem.Conflict("status", "a decommissioned destination cannot change its status")
	case to == store.StatusCreated:
		return problem.Conflict("status", fmt.Sprintf("a destination that is %s cannot return to created", from))
	case from == store.StatusCreated && to == store.StatusInactive:
		// Inactive means deactivated: the destination keeps its regions
		// (routesync.Entry.Claims). One never active has none to keep.
		return problem.Conflict("status", "a destination that was never active cannot be deactivated; activate or decommission it")
	}
	return nil
}

// AddKey adds the public JWK raw of purpose to destination id. With roll,
// the key becomes the destination's current key of its use and the
// previous one stays valid for the key grace. It returns the key as
// stored.
func (r *Registry) AddKey(ctx context.Context, actor, id string, raw []byte, purpose jose.Purpose, roll bool) (store.Key, error) {
	d, err := r.store.Destination(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Key{}, problem.DestinationNotFound(id)
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("read destination %s: %w", id, err)
	}
	if d.Status == store.StatusDecommissioned {
		return store.Key{}, problem.Conflict("destinationId", fmt.Sprintf("destination %s is decommissioned", id))
	}
	k, jwk, err := decodeKey("", raw, purpose)
	if err != nil {
		return store.Key{}, err
	}
	now := r.now()
	key := store.Key{DestinationID: id, KID: k.KeyID, Use: store.KeyUse(purpose), JWK: jwk, CreatedAt: now}
	if roll {
		_, err = r.store.RollKey(ctx, actor, key, now.Add(r.keyGrace))
	} else {
		err = r.store.AddKey(ctx, actor, key)
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return store.Key{}, problem.Conflict("kid", fmt.Sprintf("a key with kid %q exists", k.KeyID))
	case errors.Is(err, store.ErrNotFound):
		return store.Key{}, problem.DestinationNotFound(id)
	case err != nil:
		return store.Key{}, fmt.Errorf("add key %s to %s: %w", k.KeyID, id, err)
	}
	return key, nil
}

// ClientInput creates an OAuth client.
type ClientInput struct {
	ClientID string   `json:"clientId"`
	Name     string   `json:"name"`
	Scopes   []string `json:"scopes"`
	Disabled bool     `json:"disabled"`
}

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// CreateClient creates an OAuth client with a fresh secret and returns
// it with the secret, which is shown this once and stored only hashed. An
// empty ClientID becomes a new UUID.
func (r *Registry) CreateClient(ctx context.Context, actor string, in ClientInput) (store.Client, string, error) {
	if strings.TrimSpace(in.Name) == "" || utf8.RuneCountInString(in.Name) > 200 {
		return store.Client{}, "", problem.Invalid("name", "name must have 1 to 200 characters")
	}
	if len(in.Scopes) == 0 {
		return store.Client{}, "", problem.Invalid("scopes", "scopes must list at least one scope")
	}
	for i, s := range in.Scopes {
		if err := scope.Validate(s); err != nil {
			return store.Client{}, "", problem.Invalid(fmt.Sprintf("scopes[%d]", i), err.Error())
		}
		// A scope of a destination that does not exist (a mistyped id)
		// would leave a client that can do nothing.
		if id, ok := scope.DestinationOf(s); ok {
			if _, err := r.store.Destination(ctx, id); errors.Is(err, store.ErrNotFound) {
				return store.Client{}, "", problem.Invalid(fmt.Sprintf("scopes[%d]", i),
					fmt.Sprintf("destination %s does not exist; create it before a client for it", id))
			} else if err != nil {
				return store.Client{}, "", fmt.Errorf("read destination %s: %w", id, err)
			}
		}
	}
	if in.ClientID == "" {
		in.ClientID = uuid.NewString()
	} else if !clientIDPattern.MatchString(in.ClientID) {
		return store.Client{}, "", problem.Invalid("clientId", "clientId must have 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")
	}
	secret := NewSecret()
	hash, err := HashSecret(secret)
	if err != nil {
		return store.Client{}, "", err
	}
	c := store.Client{ID: in.ClientID, Name: in.Name, SecretHash: hash, Scopes: in.Scopes, Disabled: in.Disabled, CreatedAt: r.now()}
	if err := r.store.CreateClient(ctx, actor, c); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.Client{}, "", problem.Conflict("clientId", fmt.Sprintf("client %s exists", c.ID))
		}
		return store.Client{}, "", fmt.Errorf("create client: %w", err)
	}
	return c, secret, nil
}

// SetClientDisabled disables client id, whose secret the token endpoint
// then refuses (and the gateways its tokens, within seconds), or enables
// it again.
func (r *Registry) SetClientDisabled(ctx context.Context, actor, id string, disabled bool) (store.Client, error) {
	action := "client.enable"
	if disabled {
		action = "client.disable"
	}
	c, err := r.store.UpdateClient(ctx, actor, id, action, func(c *store.Client) error {
		c.Disabled = disabled
		return nil
	})
	return c, clientError(id, err)
}

// RotateClientSecret gives client id a new secret and returns it; the old
// one is refused from then on. Tokens issued before stay valid until they
// expire.
func (r *Registry) RotateClientSecret(ctx context.Context, actor, id string) (store.Client, string, error) {
	secret := NewSecret()
	hash, err := HashSecret(secret)
	if err != nil {
		return store.Client{}, "", err
	}
	c, err := r.store.UpdateClient(ctx, actor, id, "client.rotate-secret", func(c *store.Client) error {
		c.SecretHash = hash
		return nil
	})
	if err != nil {
		return store.Client{}, "", clientError(id, err)
	}
	return c, secret, nil
}

// clientError answers an unknown client as the API does.
func clientError(id string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return problem.NotFound("clientId", fmt.Sprintf("client %s does not exist", id))
	}
	return fmt.Errorf("update client %s: %w", id, err)
}

// NewSecret returns a fresh client secret: 32 random bytes, base64url.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// SecretCost is the bcrypt cost of client secrets' hashes.
const SecretCost = bcrypt.DefaultCost

// HashSecret returns the bcrypt hash of a client secret, for storing in
// store.Client.SecretHash.
func HashSecret(secret string) ([]byte, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(secret), SecretCost)
	if err != nil {
		return nil, fmt.Errorf("hash secret: %w", err)
	}
	return h, nil
}

// Imported is what a reference import left: the store's account of it
// and the revision that announced it (0 when it was not announced).
type Imported[T any] struct {
	Result   T
	Revision uint64
}

// ImportAreas makes d, a parsed GV100AD directory, the stored one and
// announces it. An older directory than the one stored is a 409.
func (r *Registry) ImportAreas(ctx context.Context, actor string, d *ars.Directory) (Imported[store.AreaImport], error) {
	if r.ref == nil {
		return Imported[store.AreaImport]{}, problem.Unavailable("imports need a store that keeps reference data")
	}
	res, err := r.ref.ImportAreas(ctx, actor, d)
	if errors.Is(err, store.ErrStale) {
		return Imported[store.AreaImport]{}, problem.Conflict("body", err.Error())
	}
	if errors.Is(err, store.ErrIncomplete) {
		return Imported[store.AreaImport]{}, problem.Unprocessable("body", err.Error())
	}
	if err != nil {
		return Imported[store.AreaImport]{}, fmt.Errorf("import areas: %w", err)
	}
	return Imported[store.AreaImport]{Result: res, Revision: r.announceReference(ctx)}, nil
}

// ImportCatalogue adds and updates LeiKa services and announces it.
func (r *Registry) ImportCatalogue(ctx context.Context, actor string, services []leika.Service) (Imported[store.CatalogueImport], error) {
	if r.ref == nil {
		return Imported[store.CatalogueImport]{}, problem.Unavailable("imports need a store that keeps reference data")
	}
	res, err := r.ref.ImportCatalogue(ctx, actor, services)
	if err != nil {
		return Imported[store.CatalogueImport]{}, fmt.Errorf("import catalogue: %w", err)
	}
	return Imported[store.CatalogueImport]{Result: res, Revision: r.announceReference(ctx)}, nil
}

// ImportPostcodes replaces the postcodes and announces it.
func (r *Registry) ImportPostcodes(ctx context.Context, actor string, codes []ars.PostalCode) (Imported[store.PostcodeImport], error) {
	if r.ref == nil {
		return Imported[store.PostcodeImport]{}, problem.Unavailable("imports need a store that keeps reference data")
	}
	res, err := r.ref.ImportPostcodes(ctx, actor, codes)
	if err != nil {
		return Imported[store.PostcodeImport]{}, fmt.Errorf("import postcodes: %w", err)
	}
	return Imported[store.PostcodeImport]{Result: res, Revision: r.announceReference(ctx)}, nil
}

// ImportProblem turns a parse error of an imported file into a problem
// naming its line; other errors pass through.
func ImportProblem(err error) error {
	line := 0
	var ale *ars.LineError
	var lle *leika.LineError
	switch {
	case errors.As(err, &ale):
		line = ale.Line
	case errors.As(err, &lle):
		line = lle.Line
	case errors.Is(err, ars.ErrFormat), errors.Is(err, leika.ErrFormat):
	default:
		return err
	}
	p := problem.Invalid("body", err.Error())
	if line > 0 {
		p = p.With("line", line)
	}
	return p
}

// lockWrites orders a destination write after the others of this
// process and of every other, then brings the routing table up to date so
// the write is checked against what they wrote.
func (r *Registry) lockWrites(ctx context.Context) (unlock func(), err error) {
	r.writes.Lock()
	if r.routes == nil {
		return r.writes.Unlock, nil
	}
	release, err := r.routes.LockWrites(ctx)
	if err != nil {
		r.writes.Unlock()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.log.WarnContext(ctx, "destination write not ordered", "err", err)
		return nil, problem.Unavailable("destination writes are ordered through the message bus, which did not answer; retry the request")
	}
	unlock = func() {
		release()
		r.writes.Unlock()
	}
	if err := r.routes.Prepare(ctx); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// check refuses a destination state whose routes conflict with another
// destination's: same service, same region, overlapping validity. The 409
// names the other destination (extension conflictingDestinationId) and
// the field of the offending region.
func (r *Registry) check(ctx context.Context, d store.Destination) error {
	if r.routes == nil {
		return nil
	}
	err := r.routes.Check(ctx, d)
	var ce *routing.ConflictError
	var re *routing.RouteError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		field := "services"
		for i, s := range d.Services {
			id, _ := routing.ServiceID(s.Identifier)
			for j, region := range s.Regions {
				if id == ce.Route.Service && region == ce.Route.Region {
					field = fmt.Sprintf("services[%d].regions[%d]", i, j)
				}
			}
		}
		return problem.Conflict(field, fmt.Sprintf("destination %s already serves %s in %s at an overlapping time (%s); end one route before the other starts",
			ce.Other.DestinationID, ce.Route.Service, ce.Route.Region, ce.Other)).
			With("conflictingDestinationId", ce.Other.DestinationID)
	case errors.As(err, &re):
		return problem.Invalid("services", re.Error())
	}
	return err
}

// regionsOf returns the set of regions d's services name.
func regionsOf(d store.Destination) map[string]bool {
	out := make(map[string]bool)
	for _, s := range d.Services {
		for _, region := range s.Regions {
			out[region] = true
		}
	}
	return out
}

// UpdateOption changes what UpdateDestination allows.
type UpdateOption func(*updateOptions)

type updateOptions struct {
	withinArea bool
}

// WithinArea refuses a change that gives a service a region outside the
// destination's area: its home region, or without one the regions it
// serves. The most specific region decides a route, so a Gemeinde naming
// its Kreis would take the service from the authority responsible there;
// a destination's manager may not, the operator may.
func WithinArea() UpdateOption {
	return func(o *updateOptions) { o.withinArea = true }
}

// WithinHome refuses a region of d outside its home region, when it names
// one: a destination's manager, who cannot set it, keeps within it, and
// its inbox subject is filed where a subscriber of its regions looks.
func WithinHome(d store.Destination) error {
	if d.HomeRegion == "" {
		return nil
	}
	return checkArea(d, []string{d.HomeRegion}, nil)
}

// areaOf is d's area as ARS prefixes (see WithinArea).
func areaOf(d store.Destination) []string {
	if d.HomeRegion != "" {
		return []string{d.HomeRegion}
	}
	var area []string
	for region := range regionsOf(d) {
		area = append(area, strings.TrimPrefix(region, "DE"))
	}
	slices.Sort(area)
	return area
}

// servedOf names each service and region d serves, as "service region".
func servedOf(d store.Destination) map[string]bool {
	out := make(map[string]bool)
	for _, s := range d.Services {
		for _, region := range s.Regions {
			out[s.Identifier+" "+region] = true
		}
	}
	return out
}

// checkArea refuses a region of d outside area that d did not serve the
// service in before (served).
func checkArea(d store.Destination, area []string, served map[string]bool) error {
	for i, s := range d.Services {
		for j, region := range s.Regions {
			ars := strings.TrimPrefix(region, "DE")
			if served[s.Identifier+" "+region] || slices.ContainsFunc(area, func(a string) bool { return strings.HasPrefix(ars, a) }) {
				continue
			}
			return problem.Forbidden(fmt.Sprintf("region %s lies outside the area of destination %s (DE%s); only an operator (%s) widens a destination's area",
				region, d.ID, strings.Join(area, ", DE"), scope.Admin)).WithField(fmt.Sprintf("services[%d].regions[%d]", i, j))
		}
	}
	return nil
}

// checkRegions refuses a region of d that the area directory does not
// hold, unless it is in kept: a region already stored is not judged
// again, so a later directory import that retires it does not block
// unrelated changes of the destination.
func (r *Registry) checkRegions(ctx context.Context, d store.Destination, kept map[string]bool) error {
	if r.routes == nil {
		return nil
	}
	for i, s := range d.Services {
		for j, region := range s.Regions {
			if kept[region] {
				continue
			}
			if err := r.routes.CheckRegion(ctx, fmt.Sprintf("services[%d].regions[%d]", i, j), region); err != nil {
				return err
			}
		}
	}
	return nil
}

// announce reads destination id's stored state and announces it. The
// write has happened: a failed announcement is logged, and processes catch
// up at their next resync.
func (r *Registry) announce(ctx context.Context, id string) (Change, error) {
	// Stored is stored: a caller gone meanwhile does not keep the other
	// processes from learning of it.
	ctx = context.WithoutCancel(ctx)
	d, err := r.store.Destination(ctx, id)
	if err != nil {
		return Change{}, fmt.Errorf("read destination %s: %w", id, err)
	}
	c := Change{Destination: d}
	if r.routes == nil {
		return c, nil
	}
	actx, cancel := context.WithTimeout(ctx, announceWait)
	defer cancel()
	if c.Revision, err = r.routes.PublishDestination(actx, d); err != nil {
		c.Revision = 0
		r.log.ErrorContext(ctx, "announce destination change", "destination_id", id, "err", err)
	}
	return c, nil
}

// announceReference announces an import; 0 when it could not.
func (r *Registry) announceReference(ctx context.Context) uint64 {
	if r.refs == nil {
		return 0
	}
	ctx = context.WithoutCancel(ctx)
	actx, cancel := context.WithTimeout(ctx, announceWait)
	defer cancel()
	rev, err := r.refs.PublishReference(actx)
	if err != nil {
		r.log.ErrorContext(ctx, "announce reference import", "err", err)
		return 0
	}
	return rev
}
