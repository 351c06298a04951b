package client

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

// TestGCMReaderMatchesStandardLibrary decrypts what crypto/cipher's GCM
// sealed, at sizes around the chunk boundaries, and checks that a flipped
// bit anywhere is detected.
func TestGCMReaderMatchesStandardLibrary(t *testing.T) {
	key := make([]byte, 32)
	iv := make([]byte, 12)
	aad := []byte("eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0")
	_, _ = rand.Read(key)
	_, _ = rand.Read(iv)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, 15, 16, 17, gcmChunk - 1, gcmChunk, gcmChunk + 1, 2*gcmChunk + 16, 3*gcmChunk + 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			plain := make([]byte, size)
			_, _ = rand.Read(plain)
			sealed := aead.Seal(nil, iv, plain, aad)
			ct, tag := sealed[:size], sealed[size:]

			got, err := gcmOpen(key, iv, aad, ct, tag)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatal("plaintext differs")
			}

			for _, flip := range []struct {
				name string
				ct   []byte
				tag  []byte
				aad  []byte
			}{
				{"ciphertext", flipped(ct, size/2), tag, aad},
				{"tag", ct, flipped(tag, 3), aad},
				{"aad", ct, tag, flipped(aad, 7)},
			} {
				if flip.ct == nil {
					continue // nothing to flip in an empty ciphertext
				}
				if _, err := gcmOpen(key, iv, flip.aad, flip.ct, flip.tag); !errors.Is(err, jose.ErrDecrypt) {
					t.Errorf("flipped %s: err = %v, want jose.ErrDecrypt", flip.name, err)
				}
			}
		})
	}
}

func gcmOpen(key, iv, aad, ct, tag []byte) ([]byte, error) {
	r, err := newGCMReader(key, iv, aad, bytes.NewReader(ct), func() ([]byte, error) { return tag, nil })
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// flipped returns a copy of b with one bit of byte i flipped, nil for an empty b.
func flipped(b []byte, i int) []byte {
	if len(b) == 0 {
		return nil
	}
	c := bytes.Clone(b)
	c[i%len(c)] ^= 0x10
	return c
}

func TestGFMultiplication(t *testing.T) {
	one := gf{hi: 1 << 63}
	x := gf{hi: 0x66e94bd4ef8a2c3b, lo: 0x884cfa59ca342b2e}
	if got := x.mul(one); got != x {
		t.Errorf("x·1 = %x, want %x", got, x)
	}
	if got := x.pow(3); got != x.mul(x).mul(x) {
		t.Errorf("x^3 = %x, want x·x·x", got)
	}
	if got := x.pow(0); got != one {
		t.Errorf("x^0 = %x, want 1", got)
	}
}

// TestDecryptStream decrypts JWEs made by jose.Encrypt and by go-jose with
// DEFLATE compression, and refuses broken ones.
func TestDecryptStream(t *testing.T) {
	k := testKeys(t)
	ring := KeyRing{k.enc.Public.KeyID: k.enc.Private}
	plain := bytes.Repeat([]byte("Bauantrag, Anlage 1. "), 20000)
	compact, err := jose.Encrypt(plain, &k.enc.Public, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	zipped := encryptDeflate(t, plain, k.enc)
	tag := compact[bytes.LastIndexByte([]byte(compact), '.')+1:]

	t.Run("plain", func(t *testing.T) {
		var out bytes.Buffer
		got, err := decryptStream(bytes.NewReader([]byte(compact)), ring, 1<<30, 1<<30, &out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), plain) || got.Size != int64(len(plain)) || got.AuthTag != tag || got.KID != k.enc.Public.KeyID {
			t.Fatalf("got %+v and %d bytes", got, out.Len())
		}
	})
	t.Run("deflate", func(t *testing.T) {
		var out bytes.Buffer
		if _, err := decryptStream(bytes.NewReader([]byte(zipped)), ring, 1<<30, 1<<30, &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), plain) {
			t.Fatal("plaintext differs")
		}
	})

	segments := bytes.Split([]byte(compact), []byte("."))
	ctBytes, _ := base64.RawURLEncoding.DecodeString(string(segments[3]))
	ctBytes[len(ctBytes)/2] ^= 1
	tampered := string(bytes.Join([][]byte{segments[0], segments[1], segments[2],
		[]byte(base64.RawURLEncoding.EncodeToString(ctBytes)), segments[4]}, []byte(".")))

	for _, tc := range []struct {
		name     string
		in       string
		ring     KeyRing
		max      int64
		maxPlain int64
		want     error
	}{
		{"tampered ciphertext", tampered, ring, 1 << 30, 1 << 30, jose.ErrDecrypt},
		{"unknown kid", compact, KeyRing{"other-key-1": k.enc.Private}, 1 << 30, 1 << 30, ErrUnknownKey},
		{"wrong key", compact, KeyRing{k.enc.Public.KeyID: k.enc2.Private}, 1 << 30, 1 << 30, jose.ErrDecrypt},
		{"four segments", compact[:bytes.LastIndexByte([]byte(compact), '.')], ring, 1 << 30, 1 << 30, jose.ErrJWE},
		{"padding", compact + "=", ring, 1 << 30, 1 << 30, jose.ErrJWE},
		{"too long", compact, ring, 1000, 1 << 30, jose.ErrTooLarge},
		{"plaintext too long", compact, ring, 1 << 30, 1000, errPlainTooLarge},
		{"bomb", zipped, ring, 1 << 30, int64(len(plain) - 1), errPlainTooLarge},
		{"empty", "", ring, 1 << 30, 1 << 30, jose.ErrJWE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decryptStream(bytes.NewReader([]byte(tc.in)), tc.ring, tc.max, tc.maxPlain, io.Discard)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
