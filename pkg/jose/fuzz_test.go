package jose_test

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

// FuzzParseJWE checks that ParseJWE never panics, reports only rule errors,
// agrees with ScanJWE, and accepts nothing go-jose cannot parse.
func FuzzParseJWE(f *testing.F) {
	for _, c := range jweCases() {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := jose.ParseJWE(in)
		checkScanMatchesParse(t, in, iotest3(in), int64(len(in))+1)
		if err != nil {
			if !errors.Is(err, jose.ErrJWE) || ruleField(err) == "" {
				t.Fatalf("error without a rule: %v", err)
			}
			return
		}
		if got.AuthTag != in[strings.LastIndexByte(in, '.')+1:] {
			t.Fatalf("AuthTag %q is not the last segment", got.AuthTag)
		}
		if _, err := gojose.ParseEncryptedCompact(in, []gojose.KeyAlgorithm{gojose.RSA_OAEP_256}, []gojose.ContentEncryption{gojose.A256GCM}); err != nil {
			t.Fatalf("ParseJWE accepted what go-jose refuses: %v", err)
		}
	})
}

// iotest3 reads in pieces of three bytes, so segment boundaries fall inside reads.
func iotest3(s string) io.Reader { return &chunkReader{data: []byte(s), n: 3} }

type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(r.n, len(p), len(r.data))
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

// FuzzScanJWE checks ScanJWE against ParseJWE for any input and read size,
// and that the limit is enforced exactly.
func FuzzScanJWE(f *testing.F) {
	for i, c := range jweCases() {
		f.Add([]byte(c.in), uint16(i*37))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		in := string(data)
		checkScanMatchesParse(t, in, &chunkReader{data: data, n: int(chunk)%4096 + 1}, int64(len(data))+1)

		if len(data) == 0 {
			return
		}
		_, n, err := jose.ScanJWE(bytes.NewReader(data), io.Discard, int64(len(data)))
		_, wantErr := jose.ParseJWE(in)
		if (err == nil) != (wantErr == nil) || (err == nil && n != int64(len(data))) {
			t.Fatalf("at max = len: %v (wrote %d), ParseJWE: %v", err, n, wantErr)
		}
		if len(data) == 1 {
			return
		}
		_, _, err = jose.ScanJWE(bytes.NewReader(data), io.Discard, int64(len(data)-1))
		if err == nil {
			t.Fatal("input one byte over the limit accepted")
		}
		if !errors.Is(err, jose.ErrTooLarge) && !errors.Is(err, jose.ErrJWE) {
			t.Fatalf("over the limit: %v", err)
		}
	})
}

// FuzzValidatePublicKey checks that ValidatePublicKey never panics and that
// whatever it accepts keeps every rule and survives a round trip.
func FuzzValidatePublicKey(f *testing.F) {
	// Valid keys come from testdata: generating RSA-4096 keys in a
	// coverage-instrumented fuzz worker takes far too long.
	f.Add([]byte(`{"kty":"RSA","n":"AQAB","e":"AQAB","key_ops":["wrapKey"],"alg":"RSA-OAEP-256","kid":"12345678","x5c":[]}`), false)
	f.Add([]byte(`{"kty":"RSA","kty":"EC"}`), true)
	f.Fuzz(func(t *testing.T, raw []byte, signing bool) {
		p := jose.Encryption
		if signing {
			p = jose.Signing
		}
		jwk, err := jose.ValidatePublicKey(raw, p)
		if err != nil {
			if !errors.Is(err, jose.ErrKeyRule) || ruleField(err) == "" {
				t.Fatalf("error without a rule: %v", err)
			}
			return
		}
		pub, ok := jwk.Key.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() < jose.MinRSABits || pub.E != 65537 {
			t.Fatalf("accepted key %T breaks the RSA rules", jwk.Key)
		}
		if n := utf8.RuneCountInString(jwk.KeyID); n < jose.MinKIDLen || n > jose.MaxKIDLen || len(jwk.Certificates) == 0 {
			t.Fatalf("accepted kid %q with %d certificates", jwk.KeyID, len(jwk.Certificates))
		}
		again, err := jose.KeyPair{Purpose: p, Public: *jwk}.PublicJSON()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jose.ValidatePublicKey(again, p); err != nil {
			t.Fatalf("re-serialised key refused: %v", err)
		}
	})
}
