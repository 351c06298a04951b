package client

import (
	"bytes"
	"errors"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

// FuzzParseMetadata feeds decrypted metadata, which a sender controls, to
// the structural checks. Whatever they accept must survive a rebuild.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(`{"contentStructure":{"attachments":[` + attachment + `]}}`))
	for _, tc := range brokenMetadata {
		f.Add([]byte(tc.doc))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := parseMetadata(raw, nil)
		if err != nil {
			if !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("error %v does not wrap ErrInvalidMetadata", err)
			}
			return
		}
		svc := ServiceType{Identifier: serviceURN}
		if m.PublicServiceType != nil {
			svc = *m.PublicServiceType
		}
		rebuilt, err := buildMetadata(nil, svc, m.ContentStructure.Data, m.ContentStructure.Attachments)
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		if _, err := parseMetadata(rebuilt, nil); err != nil {
			t.Fatalf("accepted %s, but not its rebuild %s: %v", raw, rebuilt, err)
		}
	})
}

// FuzzDecryptStream feeds downloaded attachments, which the network
// controls, to the streaming decryption, and compares its verdict and
// plaintext with go-jose's (through jose.Decrypt).
func FuzzDecryptStream(f *testing.F) {
	k := testKeys(f)
	ring := KeyRing{k.enc.Public.KeyID: k.enc.Private}
	for _, plain := range [][]byte{[]byte("x"), bytes.Repeat([]byte("Anlage "), 3000)} {
		s, err := jose.Encrypt(plain, &k.enc.Public, "application/pdf")
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(s))
		f.Add([]byte(encryptDeflate(f, plain, k.enc)))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		got, err := decryptStream(bytes.NewReader(in), ring, 1<<20, 1<<20, &out)
		want, werr := jose.Decrypt(string(in), k.enc.Private)
		if werr != nil && errors.Is(werr, jose.ErrJWE) {
			// go-jose is the reference only for well-formed JWEs.
			if err == nil {
				t.Fatalf("streamed decryption accepted what ParseJWE refuses: %v", werr)
			}
			return
		}
		switch {
		case err == nil && werr != nil:
			t.Fatalf("streamed decryption accepted what go-jose refuses: %v", werr)
		case err == nil && (!bytes.Equal(out.Bytes(), want) || got.Size != int64(len(want))):
			t.Fatal("plaintexts differ")
		case err != nil && werr == nil && !errors.Is(err, ErrUnknownKey):
			t.Fatalf("streamed decryption refused what go-jose accepts: %v", err)
		}
	})
}
