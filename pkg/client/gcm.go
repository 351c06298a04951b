package client

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

// gcmChunk is how much ciphertext gcmReader authenticates per step; a
// multiple of the AES block size.
const gcmChunk = 64 << 10

// maxGCMBlocks bounds the ciphertext so that the full-width counter of
// cipher.NewCTR never carries out of GCM's 32-bit counter field.
const maxGCMBlocks = 1<<32 - 2

// gf is an element of GF(2^128) in GCM's bit order: hi holds the first 64
// bits of the block, big-endian.
type gf struct{ hi, lo uint64 }

func gfLoad(b []byte) gf {
	return gf{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])}
}

func (x gf) put(b []byte) {
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:16], x.lo)
}

func (x gf) xor(y gf) gf { return gf{x.hi ^ y.hi, x.lo ^ y.lo} }

// mul multiplies in GCM's field (NIST SP 800-38D, algorithm 1). It runs a
// handful of times per chunk, so the plain bitwise form is fast enough.
func (x gf) mul(y gf) gf {
	var z gf
	v := y
	for i := range 128 {
		var bit uint64
		if i < 64 {
			bit = x.hi >> (63 - i) & 1
		} else {
			bit = x.lo >> (127 - i) & 1
		}
		if bit == 1 {
			z = z.xor(v)
		}
		carry := v.lo & 1
		v.lo = v.lo>>1 | v.hi<<63
		v.hi >>= 1
		if carry == 1 {
			v.hi ^= 0xe1 << 56
		}
	}
	return z
}

// pow returns x^n.
func (x gf) pow(n uint64) gf {
	r := gf{hi: 1 << 63} // the field's one
	for ; n > 0; n >>= 1 {
		if n&1 == 1 {
			r = r.mul(x)
		}
		x = x.mul(x)
	}
	return r
}

// ghash computes GCM's GHASH incrementally with the standard library's
// constant-time, hardware-backed GCM doing the bulk work. Sealing an empty
// plaintext with a chunk as additional data yields E(K, J0') ⊕ GHASH(chunk ‖
// lengths); since GHASH is linear, chunk results combine through a few
// field multiplications. The state z is the running GHASH value times H.
type ghash struct {
	aead  cipher.AEAD
	h     gf
	ej0   gf // E(K, J0') for the all-zero nonce Seal uses
	hFull gf // H^(gcmChunk/16)
	z     gf
	nonce [12]byte
	tag   []byte
}

func newGHASH(block cipher.Block) (*ghash, error) {
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	g := &ghash{aead: aead, tag: make([]byte, 0, 16)}
	var b [16]byte
	block.Encrypt(b[:], b[:])
	g.h = gfLoad(b[:])
	b = [16]byte{15: 1}
	block.Encrypt(b[:], b[:])
	g.ej0 = gfLoad(b[:])
	g.hFull = g.h.pow(gcmChunk / 16)
	return g, nil
}

// update absorbs p, zero-padded to a whole block. Every p but the last of
// a GHASH input must be a whole number of blocks.
func (g *ghash) update(p []byte) {
	if len(p) == 0 {
		return
	}
	blocks := uint64(len(p)+15) / 16
	t := g.aead.Seal(g.tag[:0], g.nonce[:], nil, p)
	lengths := gf{hi: uint64(len(p)) * 8}
	// GHASH(p ‖ lengths) = P·H ⊕ lengths·H, where P·H is p's contribution to z.
	contrib := gfLoad(t).xor(g.ej0).xor(lengths.mul(g.h))
	hk := g.hFull
	if blocks != gcmChunk/16 {
		hk = g.h.pow(blocks)
	}
	g.z = g.z.mul(hk).xor(contrib)
}

// sum returns GHASH over what was absorbed, closed with the length block.
func (g *ghash) sum(aadLen, ctLen uint64) gf {
	return g.z.xor(gf{hi: aadLen * 8, lo: ctLen * 8}.mul(g.h))
}

// jweHeader is what a compact JWE's protected header declares.
type jweHeader struct {
	Alg string `json:"alg"`
	Enc string `json:"enc"`
	KID string `json:"kid"`
	Zip string `json:"zip"`
	Cty string `json:"cty"`
}

// gcmReader yields the plaintext of an A256GCM ciphertext read from ct.
// Plaintext is released before the tag is checked, so a caller must treat
// everything read as unverified until Read returns io.EOF: only then has
// the tag matched. A wrong tag yields an error wrapping jose.ErrDecrypt.
type gcmReader struct {
	ct     io.Reader
	tagSeg func() ([]byte, error) // reads the tag once the ciphertext is done
	ctr    cipher.Stream
	gh     *ghash
	ej0    gf // E(K, J0) for the JWE's IV
	aadLen uint64
	ctLen  uint64
	buf    []byte
	out    []byte // decrypted, not yet returned
	done   bool
	err    error
}

func newGCMReader(cek, iv, aad []byte, ct io.Reader, tagSeg func() ([]byte, error)) (*gcmReader, error) {
	if len(cek) != 32 {
		return nil, fmt.Errorf("%w: content key has %d bytes, want 32", jose.ErrDecrypt, len(cek))
	}
	if len(iv) != 12 {
		return nil, fmt.Errorf("%w: initialization vector has %d bytes, want 12", jose.ErrDecrypt, len(iv))
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gh, err := newGHASH(block)
	if err != nil {
		return nil, err
	}
	var j0 [16]byte
	copy(j0[:], iv)
	j0[15] = 1
	var ej0 [16]byte
	block.Encrypt(ej0[:], j0[:])
	j0[15] = 2
	gh.update(aad)
	return &gcmReader{
		ct:     ct,
		tagSeg: tagSeg,
		ctr:    cipher.NewCTR(block, j0[:]),
		gh:     gh,
		ej0:    gfLoad(ej0[:]),
		aadLen: uint64(len(aad)),
		buf:    make([]byte, gcmChunk),
	}, nil
}

func (r *gcmReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.fill()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// fill decrypts the next chunk, or checks the tag at the end.
func (r *gcmReader) fill() {
	if r.done {
		r.err = io.EOF
		return
	}
	n, err := io.ReadFull(r.ct, r.buf)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		r.done = true
	case err != nil:
		r.err = err
		return
	}
	chunk := r.buf[:n]
	r.ctLen += uint64(n)
	if r.ctLen > maxGCMBlocks*16 {
		r.err = fmt.Errorf("%w: ciphertext exceeds the GCM limit", jose.ErrDecrypt)
		return
	}
	r.gh.update(chunk)
	r.ctr.XORKeyStream(chunk, chunk)
	r.out = chunk
	if r.done {
		r.err = r.verify()
		if r.err == nil {
			r.err = io.EOF
		}
	}
}

func (r *gcmReader) verify() error {
	tag, err := r.tagSeg()
	if err != nil {
		return err
	}
	var want [16]byte
	r.gh.sum(r.aadLen, r.ctLen).xor(r.ej0).put(want[:])
	if len(tag) != 16 || subtle.ConstantTimeCompare(tag, want[:]) != 1 {
		return fmt.Errorf("%w: authentication tag does not match", jose.ErrDecrypt)
	}
	return nil
}
