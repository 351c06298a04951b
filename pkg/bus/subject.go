package bus

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Stream names, as DESIGN.md's messaging table lists them.
const (
	StreamIngress = "INGRESS"
	StreamInbox   = "INBOX"
	StreamEvents  = "EVENTS"
	StreamDead    = "DEAD"
	// StreamCallbacks carries the callbacks the delivery role owes
	// receivers and senders; a callback leaves it once answered.
	StreamCallbacks = "CALLBACKS"
	// StreamRegistry carries registry changes; it keeps the last message
	// per subject, and its sequence is the registry revision.
	StreamRegistry = "REGISTRY"
	// StreamPayloads is the object store's stream behind BucketPayloads.
	StreamPayloads = "OBJ_" + BucketPayloads
)

// Subject prefixes of the streams; every subject of a stream starts
// with its prefix and a dot.
const (
	PrefixIngress  = "ab.ingress"
	PrefixInbox    = "ab.inbox"
	PrefixEvents   = "ab.events"
	PrefixDead     = "ab.dead"
	PrefixCallback = "ab.callbacks"
	PrefixRegistry = "ab.registry"
)

// Subjects of REGISTRY: one per destination, carrying its whole routing
// state, one for reference data imports, and one for the id of the
// installation the bus belongs to.
const (
	RegistryReference    = PrefixRegistry + ".reference"
	RegistryInstallation = PrefixRegistry + ".installation"
	registryDest         = PrefixRegistry + ".destination."
)

// ErrInvalidToken means a value cannot become a subject token: wrong length,
// a non-digit where digits belong, a malformed UUID, or a character NATS
// treats specially ('.', '*', '>', whitespace).
var ErrInvalidToken = errors.New("invalid subject token")

// ErrInvalidSubject means a subject or filter does not have the shape its
// stream expects.
var ErrInvalidSubject = errors.New("invalid subject")

// bundLand is the Land token of a Bund-level (empty) ARS: no Land has code 00.
const bundLand = "00"

// arsPlace holds the three region tokens of a subject.
type arsPlace struct {
	land, kreis, ars string
}

// placeOf turns an ARS or ARS prefix into the region tokens of a subject.
//
// Padding rule: an ARS prefix of 0, 2, 3, 5 or 9 digits (Bund, Land,
// Regierungsbezirk, Kreis, Gemeindeverband) is padded with zeros to 12 digits,
// the same way the official ARS writes higher levels (Baden-Württemberg is
// 080000000000). The Land token is the first 2 digits and the Kreis token the
// first 5, so a Land filter (ab.inbox.08.>) covers destinations of every level
// in that Land, and a Kreis filter (ab.inbox.08.08311.>) covers the Kreis and
// everything below it. The empty ARS (the Bund) becomes Land 00. Where the
// levels coincide (Berlin 110000000000 is Land, Kreis and Gemeinde) the padded
// forms coincide too, which is harmless: the last token of an inbox subject is
// the destination id.
func placeOf(field, ars string) (arsPlace, error) {
	for i := 0; i < len(ars); i++ {
		if c := ars[i]; c < '0' || c > '9' {
			return arsPlace{}, tokenError(field, ars, fmt.Sprintf("byte %d is %q, want a digit", i+1, c))
		}
	}
	switch len(ars) {
	case 0:
		return arsPlace{land: bundLand, kreis: bundLand + "000", ars: bundLand + "0000000000"}, nil
	case 2, 3, 5, 9, 12:
	default:
		return arsPlace{}, tokenError(field, ars, fmt.Sprintf("%d digits, want 0, 2, 3, 5, 9 or 12", len(ars)))
	}
	if land := ars[:2]; land < "01" || land > "16" {
		return arsPlace{}, tokenError(field, ars, fmt.Sprintf("Land %s does not exist, want 01 to 16", land))
	}
	full := ars + strings.Repeat("0", 12-len(ars))
	return arsPlace{land: full[:2], kreis: full[:5], ars: full}, nil
}

// PadARS returns an ARS prefix padded with zeros to the 12 digits an
// ARS has, as the official ARS writes higher levels (Baden-Württemberg is
// 080000000000).
func PadARS(ars string) string {
	if ars == "" || len(ars) >= 12 { // the Bund has no digits to pad
		return ars
	}
	return ars + strings.Repeat("0", 12-len(ars))
}

// tokenError describes why value cannot be the subject token named field.
func tokenError(field, value, reason string) error {
	return fmt.Errorf("%s %q: %s: %w", field, value, reason, ErrInvalidToken)
}

// leikaToken validates a LeiKa service key: exactly 14 digits.
func leikaToken(key string) (string, error) {
	if strings.HasPrefix(key, "urn:") {
		return "", tokenError("LeiKa key", key, "a URN, want the 14-digit key alone")
	}
	if len(key) != 14 {
		return "", tokenError("LeiKa key", key, fmt.Sprintf("%d characters, want 14 digits", len(key)))
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < '0' || c > '9' {
			return "", tokenError("LeiKa key", key, fmt.Sprintf("byte %d is %q, want a digit", i+1, c))
		}
	}
	return key, nil
}

// uuidToken validates a UUID in its 36-character hyphenated form and returns
// it in lower case, so that subjects and filters built from differently cased
// input still match.
func uuidToken(field, id string) (string, error) {
	if len(id) != 36 {
		return "", tokenError(field, id, fmt.Sprintf("%d characters, want a 36-character UUID", len(id)))
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return "", tokenError(field, id, "not a UUID")
	}
	return u.String(), nil
}

// maxReasonLen bounds a dead-letter reason; it is a label, not a message.
const maxReasonLen = 64

// reasonToken validates a dead-letter reason: 1 to 64 of [A-Za-z0-9_-].
func reasonToken(reason string) (string, error) {
	if reason == "" {
		return "", tokenError("reason", reason, "empty")
	}
	if len(reason) > maxReasonLen {
		return "", tokenError("reason", reason, fmt.Sprintf("%d characters, want at most %d", len(reason), maxReasonLen))
	}
	for i := 0; i < len(reason); i++ {
		c := reason[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", tokenError("reason", reason, fmt.Sprintf("byte %d is %q, want a letter, digit, '-' or '_'", i+1, c))
		}
	}
	return reason, nil
}

// IngressSubject returns the INGRESS subject of a submission for the
// applicant's place ars and the service leikaKey:
// ab.ingress.<land>.<kreis>.<ars12>.<leika>. ars is normally a 12-digit
// Gemeinde ARS; a shorter region prefix is padded as described at
// InboxSubject.
func IngressSubject(ars, leikaKey string) (string, error) {
	p, err := placeOf("ARS", ars)
	if err != nil {
		return "", fmt.Errorf("ingress subject: %w", err)
	}
	leika, err := leikaToken(leikaKey)
	if err != nil {
		return "", fmt.Errorf("ingress subject: %w", err)
	}
	return PrefixIngress + "." + p.land + "." + p.kreis + "." + p.ars + "." + leika, nil
}

// InboxSubject returns the INBOX subject of destinationID, whose home region
// is homeARS: ab.inbox.<land>.<kreis>.<ars12>.<destinationId>.
//
// homeARS may be an ARS prefix of 0, 2, 3, 5, 9 or 12 digits. Shorter prefixes
// are padded with zeros to 12 digits, as the official ARS writes higher
// levels: a Land-level destination in Baden-Württemberg ("08") gets
// ab.inbox.08.08000.080000000000.<id>, which a Land filter matches and no
// Kreis filter does (08000 is no Kreis). The Bund (empty ARS) gets Land 00.
// The destination id is a UUID and is written in lower case.
func InboxSubject(homeARS, destinationID string) (string, error) {
	p, err := placeOf("home ARS", homeARS)
	if err != nil {
		return "", fmt.Errorf("inbox subject: %w", err)
	}
	id, err := uuidToken("destination id", destinationID)
	if err != nil {
		return "", fmt.Errorf("inbox subject: %w", err)
	}
	return PrefixInbox + "." + p.land + "." + p.kreis + "." + p.ars + "." + id, nil
}

// InboxFilter returns the INBOX filter for every destination whose home
// region lies within arsPrefix: "" for all of them (ab.inbox.>), a 2-digit
// Land (ab.inbox.08.>), a 5-digit Kreis (ab.inbox.08.08311.>) or a 12-digit
// ARS (ab.inbox.08.08311.083110000000.*). A Regierungsbezirk (3 digits) or
// Gemeindeverband (9 digits) is no subject token boundary and is refused:
// subscribe to the Kreise or Gemeinden it contains instead.
func InboxFilter(arsPrefix string) (string, error) {
	switch len(arsPrefix) {
	case 0:
		return PrefixInbox + ".>", nil
	case 3, 9:
		return "", fmt.Errorf("inbox filter: %w", tokenError("ARS prefix", arsPrefix,
			fmt.Sprintf("%d digits is no subject token boundary, want 0, 2, 5 or 12", len(arsPrefix))))
	}
	p, err := placeOf("ARS prefix", arsPrefix)
	if err != nil {
		return "", fmt.Errorf("inbox filter: %w", err)
	}
	switch len(arsPrefix) {
	case 2:
		return PrefixInbox + "." + p.land + ".>", nil
	case 5:
		return PrefixInbox + "." + p.land + "." + p.kreis + ".>", nil
	default:
		return PrefixInbox + "." + p.land + "." + p.kreis + "." + p.ars + ".*", nil
	}
}

// InboxDestinationFilter returns the INBOX filter for one destination without
// knowing its home region: ab.inbox.*.*.*.<destinationId>.
func InboxDestinationFilter(destinationID string) (string, error) {
	id, err := uuidToken("destination id", destinationID)
	if err != nil {
		return "", fmt.Errorf("inbox filter: %w", err)
	}
	return PrefixInbox + ".*.*.*." + id, nil
}

// EventsSubject returns the EVENTS subject of a case: ab.events.<caseId>.
func EventsSubject(caseID string) (string, error) {
	id, err := uuidToken("case id", caseID)
	if err != nil {
		return "", fmt.Errorf("events subject: %w", err)
	}
	return PrefixEvents + "." + id, nil
}

// DeadSubject returns the DEAD subject for reason: ab.dead.<reason>. A reason
// is 1 to 64 letters, digits, '-' or '_'.
func DeadSubject(reason string) (string, error) {
	r, err := reasonToken(reason)
	if err != nil {
		return "", fmt.Errorf("dead subject: %w", err)
	}
	return PrefixDead + "." + r, nil
}

// CallbackSubject returns the CALLBACKS subject of a callback of kind
// (a reason-like token such as "new-submissions") about id, a UUID:
// ab.callbacks.<kind>.<id>.
func CallbackSubject(kind, id string) (string, error) {
	k, err := reasonToken(kind)
	if err != nil {
		return "", fmt.Errorf("callback subject: %w", err)
	}
	u, err := uuidToken("id", id)
	if err != nil {
		return "", fmt.Errorf("callback subject: %w", err)
	}
	return PrefixCallback + "." + k + "." + u, nil
}

// IngressAddress is what an INGRESS subject says.
type IngressAddress struct {
	// ARS is the 12-digit (possibly zero-padded) ARS of the applicant's place.
	ARS string
	// LeikaKey is the 14-digit service key.
	LeikaKey string
}

// ParseIngressSubject reads an INGRESS subject built by IngressSubject.
func ParseIngressSubject(subject string) (IngressAddress, error) {
	p, last, err := parsePlaced(PrefixIngress, subject)
	if err != nil {
		return IngressAddress{}, fmt.Errorf("parse ingress subject: %w", err)
	}
	leika, err := leikaToken(last)
	if err != nil {
		return IngressAddress{}, fmt.Errorf("parse ingress subject: %w", err)
	}
	return IngressAddress{ARS: p.ars, LeikaKey: leika}, nil
}

// InboxAddress is what an INBOX subject says.
type InboxAddress struct {
	// HomeARS is the 12-digit (possibly zero-padded) home ARS of the destination.
	HomeARS string
	// DestinationID is the destination's UUID in lower case.
	DestinationID string
}

// ParseInboxSubject reads an INBOX subject built by InboxSubject.
func ParseInboxSubject(subject string) (InboxAddress, error) {
	p, last, err := parsePlaced(PrefixInbox, subject)
	if err != nil {
		return InboxAddress{}, fmt.Errorf("parse inbox subject: %w", err)
	}
	id, err := uuidToken("destination id", last)
	if err != nil {
		return InboxAddress{}, fmt.Errorf("parse inbox subject: %w", err)
	}
	if id != last {
		return InboxAddress{}, fmt.Errorf("parse inbox subject: %w", tokenError("destination id", last, "not lower case"))
	}
	return InboxAddress{HomeARS: p.ars, DestinationID: id}, nil
}

// parsePlaced splits prefix.<land>.<kreis>.<ars12>.<last> and checks that
// the three region tokens agree with each other.
func parsePlaced(prefix, subject string) (arsPlace, string, error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return arsPlace{}, "", fmt.Errorf("%q does not start with %s.: %w", subject, prefix, ErrInvalidSubject)
	}
	tok := strings.Split(rest, ".")
	if len(tok) != 4 {
		return arsPlace{}, "", fmt.Errorf("%q has %d tokens after %s, want 4: %w", subject, len(tok), prefix, ErrInvalidSubject)
	}
	ars := tok[2]
	if len(ars) != 12 {
		return arsPlace{}, "", tokenError("ARS", ars, fmt.Sprintf("%d characters, want 12 digits", len(ars)))
	}
	var p arsPlace
	if ars == bundLand+"0000000000" {
		p, _ = placeOf("ARS", "")
	} else {
		var err error
		if p, err = placeOf("ARS", ars); err != nil {
			return arsPlace{}, "", err
		}
	}
	if tok[0] != p.land || tok[1] != p.kreis {
		return arsPlace{}, "", fmt.Errorf("%q: Land %q and Kreis %q do not match ARS %s: %w", subject, tok[0], tok[1], ars, ErrInvalidSubject)
	}
	return p, tok[3], nil
}
