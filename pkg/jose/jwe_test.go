package jose_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

const validHeader = `{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"enc-key-0001"}`

var (
	wrappedKey = bytes.Repeat([]byte{7}, 512)
	iv12       = bytes.Repeat([]byte{1}, 12)
	ct5        = []byte("hello")
	tag16      = bytes.Repeat([]byte{9}, 16)
)

type jweCase struct {
	name  string
	in    string
	field string // "" means valid
}

// jweCases are shared by the ParseJWE, ScanJWE and equivalence tests.
func jweCases() []jweCase {
	valid := compact(validHeader, wrappedKey, iv12, ct5, tag16)
	parts := strings.Split(valid, ".")
	join := func(p ...string) string { return strings.Join(p, ".") }
	withHeader := func(h string) string { return compact(h, wrappedKey, iv12, ct5, tag16) }
	return []jweCase{
		{"valid", valid, ""},
		{"cty media type", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","cty":"application/json"}`), ""},
		{"cty short form", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","cty":"xml"}`), ""},
		{"zip DEF", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","zip":"DEF"}`), ""},
		{"extra member", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","typ":"JWE"}`), ""},

		{"empty", "", "segments"},
		{"one segment", parts[0], "segments"},
		{"four segments", join(parts[:4]...), "segments"},
		{"six segments", valid + ".AAAA", "segments"},
		{"trailing dot", valid + ".", "segments"},
		{"plus sign", join(parts[0], parts[1], parts[2], "ab+c", parts[4]), "segment 3"},
		{"slash", join(parts[0], "ab/c", parts[2], parts[3], parts[4]), "segment 1"},
		{"padding", join(parts[0], parts[1], parts[2], parts[3], parts[4]+"=="), "segment 4"},
		{"trailing newline", valid + "\n", "segment 4"},
		{"space inside", join(parts[0], parts[1], parts[2], "aa aa", parts[4]), "segment 3"},
		{"impossible length", join(parts[0], "AAAAA", parts[2], parts[3], parts[4]), "segment 1"},
		{"non-canonical tag", join(parts[0], parts[1], parts[2], parts[3], parts[4][:21]+"B"), "segment 4"},
		{"empty header", join("", parts[1], parts[2], parts[3], parts[4]), "segment 0"},
		{"header too long", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"` + strings.Repeat("k", 50000) + `"}`), "segment 0"},
		{"header not JSON", withHeader(`alg=RSA-OAEP-256`), "header"},
		{"header array", withHeader(`["RSA-OAEP-256"]`), "header"},
		{"header trailing data", withHeader(validHeader + `{}`), "header"},
		{"header duplicate alg", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","alg":"dir"}`), "header"},
		{"alg RSA-OAEP", withHeader(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"k"}`), "header.alg"},
		{"alg dir", withHeader(`{"alg":"dir","enc":"A256GCM","kid":"k"}`), "header.alg"},
		{"alg missing", withHeader(`{"enc":"A256GCM","kid":"k"}`), "header.alg"},
		{"alg not a string", withHeader(`{"alg":1,"enc":"A256GCM","kid":"k"}`), "header.alg"},
		{"alg null", withHeader(`{"alg":null,"enc":"A256GCM","kid":"k"}`), "header.alg"},
		{"enc A128GCM", withHeader(`{"alg":"RSA-OAEP-256","enc":"A128GCM","kid":"k"}`), "header.enc"},
		{"enc A256CBC-HS512", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256CBC-HS512","kid":"k"}`), "header.enc"},
		{"enc missing", withHeader(`{"alg":"RSA-OAEP-256","kid":"k"}`), "header.enc"},
		{"kid missing", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM"}`), "header.kid"},
		{"kid empty", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":""}`), "header.kid"},
		{"kid number", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":42}`), "header.kid"},
		{"cty empty", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","cty":""}`), "header.cty"},
		{"cty no subtype", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","cty":"application/"}`), "header.cty"},
		{"cty garbage", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","cty":"a b/c d"}`), "header.cty"},
		{"cty number", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","cty":7}`), "header.cty"},
		{"zip GZIP", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","zip":"GZIP"}`), "header.zip"},
		{"crit", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","crit":["exp"],"exp":1}`), "header.crit"},
		{"embedded jwk", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","jwk":{}}`), "header.jwk"},
		{"x5u", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","x5u":"https://example.org"}`), "header.x5u"},
		{"x5c", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","x5c":[]}`), "header.x5c"},
		{"x5t hint", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","x5t":"` + b64(make([]byte, 20)) + `"}`), ""},
		{"x5t#S256 hint", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","x5t#S256":"` + b64(make([]byte, 32)) + `"}`), ""},
		{"x5t of SHA-256 length", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","x5t":"` + b64(make([]byte, 32)) + `"}`), "header.x5t"},
		{"x5t#S256 padded", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","x5t#S256":"` + b64(make([]byte, 32)) + `="}`), "header.x5t#S256"},
		{"x5t#S256 a number", withHeader(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k","x5t#S256":5}`), "header.x5t#S256"},
		{"encrypted key empty", compact(validHeader, nil, iv12, ct5, tag16), "segment 1"},
		{"IV of 16 bytes", compact(validHeader, wrappedKey, make([]byte, 16), ct5, tag16), "segment 2"},
		{"IV of 11 bytes", compact(validHeader, wrappedKey, make([]byte, 11), ct5, tag16), "segment 2"},
		{"IV empty", compact(validHeader, wrappedKey, nil, ct5, tag16), "segment 2"},
		{"ciphertext empty (an empty file)", compact(validHeader, wrappedKey, iv12, nil, tag16), ""},
		{"tag of 15 bytes", compact(validHeader, wrappedKey, iv12, ct5, make([]byte, 15)), "segment 4"},
		{"tag of 32 bytes", compact(validHeader, wrappedKey, iv12, ct5, make([]byte, 32)), "segment 4"},
		{"tag empty", compact(validHeader, wrappedKey, iv12, ct5, nil), "segment 4"},
	}
}

func TestParseJWE(t *testing.T) {
	for _, tt := range jweCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := jose.ParseJWE(tt.in)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid JWE refused: %v", err)
				}
				if got.Alg != jose.AlgRSAOAEP256 || got.Enc != jose.EncA256GCM || got.KID == "" {
					t.Fatalf("declared %+v", got)
				}
				if want := tt.in[strings.LastIndexByte(tt.in, '.')+1:]; got.AuthTag != want {
					t.Fatalf("AuthTag %q, want the last segment %q", got.AuthTag, want)
				}
				return
			}
			if !errors.Is(err, jose.ErrJWE) {
				t.Fatalf("error %v does not wrap ErrJWE", err)
			}
			if f := ruleField(err); f != tt.field {
				t.Fatalf("field %q, want %q (%v)", f, tt.field, err)
			}
		})
	}
}

func TestParseJWEDeclaredHeader(t *testing.T) {
	in := compact(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"enc-key-0001","cty":"application/json","zip":"DEF"}`, wrappedKey, iv12, ct5, tag16)
	got, err := jose.ParseJWE(in)
	if err != nil {
		t.Fatal(err)
	}
	want := jose.JWE{Alg: "RSA-OAEP-256", Enc: "A256GCM", KID: "enc-key-0001", Cty: "application/json", Zip: "DEF", AuthTag: "CQkJCQkJCQkJCQkJCQkJCQ", EncryptedKeyLen: 512}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestScanJWEMatchesParseJWE feeds every case through ScanJWE in one piece
// and byte by byte and demands ParseJWE's verdict and an exact copy.
func TestScanJWEMatchesParseJWE(t *testing.T) {
	readers := map[string]func(string) io.Reader{
		"whole":       func(s string) io.Reader { return strings.NewReader(s) },
		"byte-wise":   func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half-reads":  func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data-at-eof": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, tt := range jweCases() {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				checkScanMatchesParse(t, tt.in, mk(tt.in), int64(len(tt.in))+1)
			})
		}
	}
}

func checkScanMatchesParse(t *testing.T, in string, r io.Reader, max int64) {
	t.Helper()
	want, wantErr := jose.ParseJWE(in)
	var out bytes.Buffer
	got, n, err := jose.ScanJWE(r, &out, max)
	if (err == nil) != (wantErr == nil) || ruleField(err) != ruleField(wantErr) {
		t.Fatalf("ScanJWE: %v; ParseJWE: %v", err, wantErr)
	}
	if got != want {
		t.Fatalf("ScanJWE declared %+v, ParseJWE %+v", got, want)
	}
	if n != int64(out.Len()) {
		t.Fatalf("reported %d bytes written, wrote %d", n, out.Len())
	}
	if err == nil && out.String() != in {
		t.Fatalf("copy differs from input")
	}
	if err != nil && !strings.HasPrefix(in, out.String()) {
		t.Fatalf("copy is not a prefix of the input")
	}
}

func TestScanJWELimit(t *testing.T) {
	in := compact(validHeader, wrappedKey, iv12, ct5, tag16)
	size := int64(len(in))

	if _, n, err := jose.ScanJWE(strings.NewReader(in), io.Discard, size); err != nil || n != size {
		t.Fatalf("input of exactly max bytes: %d bytes, %v", n, err)
	}
	_, _, err := jose.ScanJWE(strings.NewReader(in), io.Discard, size-1)
	if !errors.Is(err, jose.ErrTooLarge) {
		t.Fatalf("one byte over max: %v, want ErrTooLarge", err)
	}
	if errors.Is(err, jose.ErrJWE) {
		t.Fatalf("too large is not a structural error: %v", err)
	}
	if _, _, err := jose.ScanJWE(strings.NewReader(in), io.Discard, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func TestScanJWEReadAndWriteErrors(t *testing.T) {
	in := compact(validHeader, wrappedKey, iv12, ct5, tag16)
	boom := errors.New("connection reset")
	_, _, err := jose.ScanJWE(iotest.ErrReader(boom), io.Discard, 1<<20)
	if !errors.Is(err, boom) || errors.Is(err, jose.ErrJWE) {
		t.Fatalf("read error: %v", err)
	}
	_, _, err = jose.ScanJWE(strings.NewReader(in), errWriter{boom}, 1<<20)
	if !errors.Is(err, boom) || errors.Is(err, jose.ErrJWE) {
		t.Fatalf("write error: %v", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

// TestScanJWELargeStreamBoundedMemory streams a 64 MiB ciphertext and checks
// that ScanJWE allocates a small fraction of it.
func TestScanJWELargeStreamBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 64 MiB")
	}
	const ctLen = 64 << 20
	head := compact(validHeader, wrappedKey, iv12, ct5, tag16)
	parts := strings.Split(head, ".")
	prefix := strings.Join(parts[:3], ".") + "."
	suffix := "." + parts[4]
	r := io.MultiReader(strings.NewReader(prefix), io.LimitReader(repeatReader('A'), ctLen), strings.NewReader(suffix))

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, n, err := jose.ScanJWE(r, io.Discard, 65<<20)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(prefix) + ctLen + len(suffix)); n != want {
		t.Fatalf("wrote %d bytes, want %d", n, want)
	}
	if got.AuthTag != parts[4] {
		t.Fatalf("AuthTag %q", got.AuthTag)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("allocated %d bytes for a 64 MiB stream", alloc)
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	enc, sig := testKeys(t)
	tests := []struct {
		name, cty string
		plaintext []byte
	}{
		{"json metadata", "application/json", []byte(`{"contentStructure":{"data":{}}}`)},
		{"no cty", "", []byte("x")},
		{"binary attachment", "application/pdf", bytes.Repeat([]byte{0, 1, 2, 255}, 100_000)},
		{"empty file", "text/plain", []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := jose.Encrypt(tt.plaintext, &enc.Public, tt.cty)
			if err != nil {
				t.Fatal(err)
			}
			got, err := jose.ParseJWE(c)
			if err != nil {
				t.Fatalf("own JWE refused: %v", err)
			}
			if got.KID != enc.Public.KeyID || got.Cty != tt.cty || got.EncryptedKeyLen != 512 {
				t.Fatalf("header kid %q cty %q", got.KID, got.Cty)
			}
			pt, err := jose.Decrypt(c, enc.Private)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pt, tt.plaintext) {
				t.Fatal("plaintext differs after round trip")
			}
			if _, err := jose.Decrypt(c, sig.Private); !errors.Is(err, jose.ErrDecrypt) {
				t.Fatalf("decrypt with the wrong key: %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestDecryptRefusesTamperingAndForeignAlgorithms(t *testing.T) {
	enc, _ := testKeys(t)
	c, err := jose.Encrypt([]byte("the application"), &enc.Public, "")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(c, ".")
	flip := func(s string) string {
		if s[0] == 'A' {
			return "B" + s[1:]
		}
		return "A" + s[1:]
	}
	tampered := strings.Join([]string{parts[0], parts[1], parts[2], flip(parts[3]), parts[4]}, ".")
	if _, err := jose.Decrypt(tampered, enc.Private); !errors.Is(err, jose.ErrDecrypt) {
		t.Fatalf("tampered ciphertext: %v, want ErrDecrypt", err)
	}

	// A JWE go-jose makes with A128GCM is well-formed but not FIT-Connect's.
	e, err := gojose.NewEncrypter(gojose.A128GCM, gojose.Recipient{Algorithm: gojose.RSA_OAEP_256, Key: enc.Public.Key, KeyID: enc.Public.KeyID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := e.Encrypt([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jose.Decrypt(foreign, enc.Private); !errors.Is(err, jose.ErrJWE) || ruleField(err) != "header.enc" {
		t.Fatalf("A128GCM JWE: %v, want a rule on header.enc", err)
	}
}

func TestEncryptRefusesBadInput(t *testing.T) {
	enc, _ := testKeys(t)
	noKID := enc.Public
	noKID.KeyID = ""
	tests := []struct {
		name      string
		plaintext []byte
		key       *gojose.JSONWebKey
		cty       string
	}{
		{"no key", []byte("x"), nil, ""},
		{"no kid", []byte("x"), &noKID, ""},
		{"symmetric key", []byte("x"), &gojose.JSONWebKey{Key: []byte("0123456789abcdef"), KeyID: "sym-key-01"}, ""},
		{"bad cty", []byte("x"), &enc.Public, "not a/media type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := jose.Encrypt(tt.plaintext, tt.key, tt.cty); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// BenchmarkScanJWE measures the streaming check of a 16 MiB attachment.
func BenchmarkScanJWE(b *testing.B) {
	head := compact(validHeader, wrappedKey, iv12, ct5, tag16)
	parts := strings.Split(head, ".")
	in := strings.Join(parts[:3], ".") + "." + strings.Repeat("A", 16<<20) + "." + parts[4]
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, _, err := jose.ScanJWE(strings.NewReader(in), io.Discard, 1<<30); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecryptWithThumbprintHints: a JWE another library made with the
// certificate thumbprints beside the kid decrypts.
func TestDecryptWithThumbprintHints(t *testing.T) {
	enc, _ := testKeys(t)
	cert := enc.Public.Certificates[0]
	s1, s256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
	opts := (&gojose.EncrypterOptions{}).
		WithHeader("kid", enc.Public.KeyID).
		WithHeader("x5t", b64(s1[:])).
		WithHeader("x5t#S256", b64(s256[:]))
	e, err := gojose.NewEncrypter(gojose.A256GCM, gojose.Recipient{Algorithm: gojose.RSA_OAEP_256, Key: enc.Public.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := e.Encrypt([]byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := jose.Decrypt(c, enc.Private); err != nil || string(pt) != `{"a":1}` {
		t.Fatalf("decrypt: %q, %v", pt, err)
	}
}
