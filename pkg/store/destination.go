package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/netguard"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/routing"
)

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// Offers returns d's offer of service (a service URN or LeiKa key, compared
// in the routing table's normal form) valid at time at and, when region
// ("DE" + ARS) is not empty, serving a region that covers it.
func (d Destination) Offers(service, region string, at time.Time) (Service, bool) {
	want := serviceKey(service)
	for _, s := range d.Services {
		if serviceKey(s.Identifier) != want || !s.ValidAt(at) {
			continue
		}
		if region == "" {
			return s, true
		}
		for _, r := range s.Regions {
			if strings.HasPrefix(region, r) {
				return s, true
			}
		}
	}
	return Service{}, false
}

// ValidAt reports whether the offer is valid at t: from ValidFrom on,
// before ValidUntil.
func (s Service) ValidAt(t time.Time) bool {
	return (s.ValidFrom == nil || !t.Before(*s.ValidFrom)) && (s.ValidUntil == nil || t.Before(*s.ValidUntil))
}

// serviceKey is a service identifier in the routing table's form, or as it
// is when it is no service identifier at all.
func serviceKey(s string) string {
	if id, err := routing.ServiceID(s); err == nil {
		return id
	}
	return s
}

var (
	semverPattern  = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$`)
	homeRegionPatt = regexp.MustCompile(`^[0-9]*$`)
)

// Validate checks every field of d against FIT-Connect's schema and
// Amtsbote's rules, and brings ReplyChannels to its canonical form.
// withCallback says whether a callback was given, so its secret is
// checked. Errors are *problem.Problem values naming the offending field.
func (d *Destination) Validate(withCallback bool) error {
	if !d.Status.Valid() {
		return problem.Invalid("status", fmt.Sprintf("status %q must be one of created, active, inactive, decommissioned", d.Status))
	}
	if err := validateContact(d.Contact); err != nil {
		return err
	}
	if err := validateServices(d.Services); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(d.EncryptionKID); n == 0 || n > 64 {
		return problem.Invalid("encryptionKid", fmt.Sprintf("encryptionKid must have 1 to 64 characters, has %d", n))
	}
	if len(d.MetadataVersions) == 0 {
		return problem.Invalid("metadataVersions", "metadataVersions must list at least one version")
	}
	for i, v := range d.MetadataVersions {
		f := fmt.Sprintf("metadataVersions[%d]", i)
		if !semverPattern.MatchString(v) {
			return problem.Invalid(f, fmt.Sprintf("%q is not a semantic version major.minor.patch", v))
		}
		if slices.Index(d.MetadataVersions, v) < i {
			return problem.Invalid(f, fmt.Sprintf("version %q is listed twice", v))
		}
	}
	if len(d.ReplyChannels) > 0 && !isNull(d.ReplyChannels) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(d.ReplyChannels, &m); err != nil || len(m) == 0 {
			return problem.Invalid("replyChannels", "replyChannels must be an object with at least one channel")
		}
		for k, v := range m {
			var o map[string]any
			if !isNull(v) && json.Unmarshal(v, &o) != nil {
				return problem.Invalid("replyChannels."+k, "each reply channel must be an object")
			}
		}
		d.ReplyChannels = bytes.TrimSpace(d.ReplyChannels)
	} else {
		d.ReplyChannels = nil
	}
	if withCallback || d.CallbackURL != "" || d.CallbackSecret != "" {
		if err := ValidateCallback(d.CallbackURL, d.CallbackSecret); err != nil {
			return err
		}
	}
	if d.HomeRegion != "" {
		if _, ok := ars.LevelOf(len(d.HomeRegion)); !homeRegionPatt.MatchString(d.HomeRegion) || !ok {
			return problem.Invalid("homeRegion", fmt.Sprintf("homeRegion %q must be an ARS prefix of 2, 3, 5, 9 or 12 digits, without \"DE\"", d.HomeRegion))
		}
	}
	return nil
}

func validateContact(c ContactInformation) error {
	for _, f := range []struct{ name, v string }{
		{"legalName", c.LegalName}, {"address", c.Address}, {"phone", c.Phone}, {"email", c.Email},
	} {
		if strings.TrimSpace(f.v) == "" {
			return problem.Invalid("contactInformation."+f.name, "contactInformation."+f.name+" is required")
		}
	}
	if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email {
		return problem.Invalid("contactInformation.email", fmt.Sprintf("%q is not an e-mail address", c.Email))
	}
	return nil
}

func validateServices(services []Service) error {
	if len(services) == 0 {
		return problem.Invalid("services", "services must list at least one service")
	}
	for i, s := range services {
		f := fmt.Sprintf("services[%d]", i)
		if err := routing.CheckServiceURN(s.Identifier); err != nil {
			return problem.Invalid(f+".identifier", err.Error())
		}
		for j := range i {
			if services[j].Identifier == s.Identifier && windowsOverlap(services[j], s) {
				return problem.Invalid(f+".identifier", fmt.Sprintf("service %s is listed twice for the same time", s.Identifier))
			}
		}
		if len(s.Regions) == 0 {
			return problem.Invalid(f+".regions", "regions must list at least one region")
		}
		for j, r := range s.Regions {
			rf := fmt.Sprintf("%s.regions[%d]", f, j)
			if _, err := ars.ParseRegion(r); err != nil {
				return problem.Invalid(rf, err.Error())
			}
			if slices.Index(s.Regions, r) < j {
				return problem.Invalid(rf, fmt.Sprintf("region %s is listed twice", r))
			}
		}
		if len(s.SubmissionSchemas) == 0 {
			return problem.Invalid(f+".submissionSchemas", "submissionSchemas must list at least one schema")
		}
		for j, sc := range s.SubmissionSchemas {
			sf := fmt.Sprintf("%s.submissionSchemas[%d]", f, j)
			if sc.MimeType != "application/json" && sc.MimeType != "application/xml" {
				return problem.Invalid(sf+".mimeType", fmt.Sprintf("mimeType %q must be application/json or application/xml", sc.MimeType))
			}
			if u, err := url.Parse(sc.SchemaURI); err != nil || u.Scheme == "" {
				return problem.Invalid(sf+".schemaUri", fmt.Sprintf("schemaUri %q is not an absolute URI", sc.SchemaURI))
			}
			if slices.Index(s.SubmissionSchemas, sc) < j {
				return problem.Invalid(sf, "schema is listed twice")
			}
		}
		if s.ValidFrom != nil && s.ValidUntil != nil && !s.ValidFrom.Before(*s.ValidUntil) {
			return problem.Invalid(f+".validUntil", "validUntil must be after validFrom")
		}
	}
	return nil
}

// windowsOverlap reports whether the validity windows of a and b share an instant.
func windowsOverlap(a, b Service) bool {
	if a.ValidUntil != nil && b.ValidFrom != nil && !a.ValidUntil.After(*b.ValidFrom) {
		return false
	}
	if b.ValidUntil != nil && a.ValidFrom != nil && !b.ValidUntil.After(*a.ValidFrom) {
		return false
	}
	return true
}

// MaxCallbackURL bounds a callback URL in bytes: it is stored with the
// destination or submission and sent in the request line of every
// callback.
const MaxCallbackURL = 2048

// ValidateCallback checks a callback as FIT-Connect's CreateCallback
// requires it: an absolute https URL without credentials and a secret of
// 32 to 512 characters.
func ValidateCallback(rawURL, secret string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || len(rawURL) < 9 {
		return problem.Invalid("callback.url", fmt.Sprintf("callback url %q must be an absolute https URL", rawURL))
	}
	if u.User != nil {
		return problem.Invalid("callback.url", "callback url must not carry credentials")
	}
	if n := utf8.RuneCountInString(secret); n < 32 || n > 512 {
		return problem.Invalid("callback.secret", fmt.Sprintf("callback secret must have 32 to 512 characters, has %d", n))
	}
	return nil
}

// CheckNewCallback checks what a callback URL (one ValidateCallback
// passed) given now must also be, unlike one stored before: at most
// MaxCallbackURL bytes, and its host no address Amtsbote does not post to,
// one outside the public internet and allow, or localhost
// (netguard.CheckHost). Such a callback would never be delivered, so the
// client is told when it gives it. Names are checked again as dialled.
func CheckNewCallback(rawURL string, allow []netip.Prefix) error {
	if len(rawURL) > MaxCallbackURL {
		return problem.Invalid("callback.url", fmt.Sprintf("callback url has %d bytes, more than %d", len(rawURL), MaxCallbackURL))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return problem.Invalid("callback.url", "callback url is not a URL")
	}
	if !strings.HasPrefix(rawURL, "https://") {
		// FIT-Connect's pattern ^https://.+ is case-sensitive, and the URL
		// is handed back as given.
		return problem.Invalid("callback.url", "callback url must begin with https:// in lower case")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return problem.Invalid("callback.url", fmt.Sprintf("callback url port %s is not a port (1 to 65535)", p))
		}
	}
	err = netguard.CheckHost(u.Hostname(), allow)
	switch {
	case errors.Is(err, netguard.ErrNotPublic):
		return problem.Invalid("callback.url", fmt.Sprintf("callback url host %s is not a public address; callbacks go to the public internet and to the networks the operator allows (--callback-allow)", u.Hostname()))
	case err != nil:
		return problem.Invalid("callback.url", "callback url "+err.Error())
	}
	return nil
}

// DeriveHomeRegion returns the longest ARS level prefix common to all
// service regions, without "DE"; "" when they share no Land.
func DeriveHomeRegion(services []Service) string {
	var common string
	first := true
	for _, s := range services {
		for _, r := range s.Regions {
			ars := strings.TrimPrefix(r, "DE")
			if first {
				common, first = ars, false
				continue
			}
			n := 0
			for n < len(common) && n < len(ars) && common[n] == ars[n] {
				n++
			}
			common = common[:n]
		}
	}
	for n := len(common); n > 0; n-- {
		if _, ok := ars.LevelOf(n); ok {
			return common[:n]
		}
	}
	return ""
}
