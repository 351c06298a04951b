package jose

import (
	"github.com/amtsbote/amtsbote/pkg/strictjson"

	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"strings"
)

// Sizes of the fixed-length JWE parts under A256GCM.
const (
	ivBytes  = 12
	tagBytes = 16
	// MaxHeaderLen bounds the base64url protected header of a JWE, so that
	// ScanJWE holds at most this much of a stream in memory.
	MaxHeaderLen = 64 << 10
	maxCtyLen    = 255
)

// segmentNames name the five parts of a compact JWE in error reasons.
var segmentNames = [5]string{"protected header", "encrypted key", "initialization vector", "ciphertext", "authentication tag"}

// JWE is what a structurally valid compact JWE declares about itself.
type JWE struct {
	Alg string // always RSA-OAEP-256
	Enc string // always A256GCM
	KID string // kid of the destination's encryption key
	Cty string // content type, empty when absent
	Zip string // "DEF" when the plaintext was compressed, else empty
	// AuthTag is the last segment, as FIT-Connect's authenticationTags carry it.
	AuthTag string
	// EncryptedKeyLen is the length in bytes of the encrypted key: with
	// RSA-OAEP the size of the recipient key's modulus.
	EncryptedKeyLen int
}

// ParseJWE checks a compact JWE without decrypting it: five segments of
// unpadded base64url (RFC 7516 compact serialization; '=' padding is refused
// although FIT-Connect's OpenAPI pattern admits it, because RFC 7515 forbids
// it and common decrypting libraries reject it), a protected header that is a
// JSON object without duplicate members declaring alg RSA-OAEP-256, enc
// A256GCM and a non-empty kid, a valid media type in cty if present, zip
// only "DEF", no crit and no key references other than kid (jwk, jku, x5c,
// x5u); a non-empty encrypted key, a 12-byte IV and a 16-byte tag. The
// ciphertext may be empty: an empty file encrypted. The protected header may be at most MaxHeaderLen characters long.
//
// Errors are *RuleError values wrapping ErrJWE. ParseJWE and ScanJWE share
// one implementation and give the same verdict on the same input.
func ParseJWE(compact string) (JWE, error) {
	var s scanner
	if err := scan(&s, compact); err != nil {
		return JWE{}, err
	}
	return s.finish()
}

// ScanJWE copies a compact JWE from r to w while checking it like ParseJWE,
// holding no more than the protected header and a fixed buffer in memory. It
// returns the bytes written to w. A stream longer than max bytes (max must
// be positive) yields an error wrapping ErrTooLarge.
//
// On any error the copy in w is incomplete or invalid and must be
// discarded: ScanJWE stops at the chunk in which it finds the first broken
// rule and does not write that chunk.
func ScanJWE(r io.Reader, w io.Writer, max int64) (JWE, int64, error) {
	if max <= 0 {
		return JWE{}, 0, fmt.Errorf("scan jwe: limit %d is not positive", max)
	}
	var (
		s        scanner
		buf      = make([]byte, min(max+1, scanBuffer))
		read     int64
		nWritten int64
	)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			read += int64(n)
			if read > max {
				return JWE{}, nWritten, fmt.Errorf("scan jwe: %w: longer than %d bytes", ErrTooLarge, max)
			}
			if err := scan(&s, buf[:n]); err != nil {
				return JWE{}, nWritten, err
			}
			wn, werr := w.Write(buf[:n])
			nWritten += int64(wn)
			if werr != nil {
				return JWE{}, nWritten, fmt.Errorf("scan jwe: write: %w", werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return JWE{}, nWritten, fmt.Errorf("scan jwe: read: %w", rerr)
		}
	}
	jwe, err := s.finish()
	return jwe, nWritten, err
}

// scanBuffer is what ScanJWE reads at a time: a large stream costs one read
// from a connection per this many bytes.
const scanBuffer = 256 << 10

// b64url maps each byte to its base64url value plus one; zero means not in the alphabet.
var b64url = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(alphabet) {
		t[alphabet[i]] = byte(i) + 1
	}
	return t
}()

// inB64url is 0xff for each byte of the base64url alphabet and zero for
// every other: eight lookups ANDed need one branch, not eight.
var inB64url = func() (t [256]byte) {
	for i, v := range b64url {
		if v != 0 {
			t[i] = 0xff
		}
	}
	return t
}()

// b64urlRun is the length of the run of base64url characters that p starts with.
func b64urlRun[T string | []byte](p T) int {
	j := 0
	for ; j+8 <= len(p); j += 8 {
		q := p[j : j+8]
		if inB64url[q[0]]&inB64url[q[1]]&inB64url[q[2]]&inB64url[q[3]]&
			inB64url[q[4]]&inB64url[q[5]]&inB64url[q[6]]&inB64url[q[7]] == 0 {
			break
		}
	}
	for j < len(p) && inB64url[p[j]] != 0 {
		j++
	}
	return j
}

// scanner checks a compact JWE fed to it in pieces.
type scanner struct {
	seg    int   // index of the segment being read
	n      int64 // characters read of the current segment
	off    int64 // characters read in total
	last   byte  // value of the current segment's last character
	header []byte
	tag    []byte
	jwe    JWE
	err    error
}

func scan[T string | []byte](s *scanner, p T) error {
	if s.err != nil {
		return s.err
	}
	for i := 0; i < len(p); i++ {
		if s.seg > 0 && s.seg < 4 {
			// Fast path through the key, IV and ciphertext, which are only counted.
			j := i + b64urlRun(p[i:])
			if j > i {
				s.last = b64url[p[j-1]] - 1
				s.n += int64(j - i)
				s.off += int64(j - i)
				if i = j; i == len(p) {
					break
				}
			}
		}
		c := p[i]
		if c == '.' {
			if err := s.endSegment(); err != nil {
				s.err = err
				return err
			}
			s.off++
			continue
		}
		v := b64url[c]
		if v == 0 {
			s.err = s.badChar(c)
			return s.err
		}
		switch s.seg {
		case 0:
			if len(s.header) >= MaxHeaderLen {
				s.err = jweRule("segment 0", "protected header is longer than %d characters", MaxHeaderLen)
				return s.err
			}
			s.header = append(s.header, c)
		case 4:
			// One more than a valid tag needs is enough to report a wrong length.
			if len(s.tag) <= base64.RawURLEncoding.EncodedLen(tagBytes) {
				s.tag = append(s.tag, c)
			}
		}
		s.last = v - 1
		s.n++
		s.off++
	}
	return nil
}

func (s *scanner) badChar(c byte) error {
	field := fmt.Sprintf("segment %d", s.seg)
	switch {
	case c == '=':
		return jweRule(field, "padding '=' at offset %d is not allowed: compact serialization uses unpadded base64url", s.off)
	case c < 0x20 || c >= 0x7f:
		return jweRule(field, "byte 0x%02x at offset %d is not base64url", c, s.off)
	default:
		return jweRule(field, "character %q at offset %d is not base64url", c, s.off)
	}
}

func (s *scanner) endSegment() error {
	if s.seg == 4 {
		return jweRule("segments", "compact JWE has more than five segments")
	}
	if err := s.checkSegment(); err != nil {
		return err
	}
	s.seg++
	s.n = 0
	s.last = 0
	return nil
}

// finish checks the end of input and returns what the JWE declares.
func (s *scanner) finish() (JWE, error) {
	if s.err != nil {
		return JWE{}, s.err
	}
	if s.seg < 4 {
		return JWE{}, jweRule("segments", "compact JWE must have five segments, has %d", s.seg+1)
	}
	if err := s.checkSegment(); err != nil {
		return JWE{}, err
	}
	s.jwe.AuthTag = string(s.tag)
	return s.jwe, nil
}

// checkSegment checks the segment just completed.
func (s *scanner) checkSegment() error {
	field := fmt.Sprintf("segment %d", s.seg)
	name := segmentNames[s.seg]
	var size int64
	switch s.n % 4 {
	case 1:
		return jweRule(field, "%s has an impossible base64url length %d", name, s.n)
	case 2:
		if s.last&0x0f != 0 {
			return jweRule(field, "%s is not canonical base64url: unused bits are set", name)
		}
		size = s.n/4*3 + 1
	case 3:
		if s.last&0x03 != 0 {
			return jweRule(field, "%s is not canonical base64url: unused bits are set", name)
		}
		size = s.n/4*3 + 2
	default:
		size = s.n / 4 * 3
	}
	switch s.seg {
	case 0:
		if size == 0 {
			return jweRule(field, "protected header is empty")
		}
		raw, err := base64.RawURLEncoding.DecodeString(string(s.header))
		if err != nil {
			return jweRule(field, "protected header is not base64url: %v", err)
		}
		s.header = nil
		return s.checkHeader(raw)
	case 1:
		if size == 0 {
			return jweRule(field, "%s is empty", name)
		}
		s.jwe.EncryptedKeyLen = int(size)
	case 2:
		if size != ivBytes {
			return jweRule(field, "initialization vector must be %d bytes, has %d", ivBytes, size)
		}
	case 4:
		if size != tagBytes {
			return jweRule(field, "authentication tag must be %d bytes, has %d", tagBytes, size)
		}
	}
	return nil
}

// checkHeader applies FIT-Connect's rules to the decoded protected header.
func (s *scanner) checkHeader(raw []byte) error {
	m, err := strictjson.Object(raw)
	if err != nil {
		return jweRule("header", "protected header: %v", err)
	}
	want := func(name, value string) error {
		got, present, err := strictjson.String(m, name)
		switch {
		case err != nil:
			return jweRule("header."+name, "%v", err)
		case !present:
			return jweRule("header."+name, "is missing, must be %q", value)
		case got != value:
			return jweRule("header."+name, "must be %q, got %q", value, got)
		}
		return nil
	}
	if err := want("alg", AlgRSAOAEP256); err != nil {
		return err
	}
	if err := want("enc", EncA256GCM); err != nil {
		return err
	}
	kid, _, err := strictjson.String(m, "kid")
	if err != nil {
		return jweRule("header.kid", "%v", err)
	}
	if kid == "" {
		return jweRule("header.kid", "is missing or empty; it names the destination's encryption key")
	}
	cty, present, err := strictjson.String(m, "cty")
	if err != nil {
		return jweRule("header.cty", "%v", err)
	}
	if present {
		if err := checkCty(cty); err != nil {
			return err
		}
	}
	zip, present, err := strictjson.String(m, "zip")
	if err != nil {
		return jweRule("header.zip", "%v", err)
	}
	if present && zip != "DEF" {
		return jweRule("header.zip", "must be \"DEF\" if present, got %q", zip)
	}
	if _, present := m["crit"]; present {
		return jweRule("header.crit", "critical header extensions are not supported")
	}
	for _, name := range []string{"jwk", "jku", "x5c", "x5u"} {
		if _, present := m[name]; present {
			return jweRule("header."+name, "keys are referenced by kid only")
		}
	}
	// A certificate thumbprint beside the kid is a hint some libraries
	// add; it must be well-formed, as decrypting libraries parse it.
	for _, t := range []struct {
		name string
		size int
	}{{"x5t", 20}, {"x5t#S256", 32}} {
		name, size := t.name, t.size
		v, present, err := strictjson.String(m, name)
		if !present {
			continue
		}
		if b, derr := base64.RawURLEncoding.Strict().DecodeString(v); err != nil || derr != nil || len(b) != size {
			return jweRule("header."+name, "must be a certificate's %d-byte thumbprint in unpadded base64url", size)
		}
	}
	s.jwe = JWE{Alg: AlgRSAOAEP256, Enc: EncA256GCM, KID: kid, Cty: cty, Zip: zip}
	return nil
}

// checkCty accepts a media type; per RFC 7516 4.1.12 "application/" may be omitted.
func checkCty(cty string) error {
	if cty == "" || len(cty) > maxCtyLen {
		return jweRule("header.cty", "must be a media type of 1 to %d characters", maxCtyLen)
	}
	full := cty
	if !strings.Contains(cty, "/") {
		full = "application/" + cty
	}
	if _, _, err := mime.ParseMediaType(full); err != nil {
		return jweRule("header.cty", "%q is not a media type: %v", cty, err)
	}
	return nil
}
