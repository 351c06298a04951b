package store

import (
	"strings"
	"time"

	"github.com/amtsbote/amtsbote/pkg/routing"
)

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
