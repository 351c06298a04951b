package client

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/amtsbote/amtsbote/pkg/jose"
)

// Bounds of the small JWE segments: an RSA-16384 wrapped key and an IV.
const (
	maxKeySegment = 4096
	maxIVSegment  = 64
	maxTagSegment = 64
)

// errStopped tells ScanJWE's goroutine that the reader gave up.
var errStopped = errors.New("stream decryption stopped")

// streamed is what decryptStream learned about a JWE.
type streamed struct {
	KID     string
	AuthTag string // the last segment, as authenticationTags carry it
	Size    int64  // plaintext bytes written
}

// decryptStream reads a compact JWE from r and writes its plaintext to w,
// never holding more than a chunk of either in memory. The JWE must pass
// jose.ScanJWE's rules (checked while reading) and be at most max bytes;
// the plaintext at most maxPlain bytes. What reaches w is unverified until
// decryptStream returns nil: on an error, discard it.
func decryptStream(r io.Reader, keys KeyRing, max, maxPlain int64, w io.Writer) (streamed, error) {
	pr, pw := io.Pipe()
	type scanned struct {
		jwe jose.JWE
		err error
	}
	scan := make(chan scanned, 1)
	go func() {
		jwe, _, err := jose.ScanJWE(r, pw, max)
		pw.CloseWithError(err)
		scan <- scanned{jwe, err}
	}()
	out, err := decryptCompact(bufio.NewReaderSize(pr, 64<<10), keys, maxPlain, w)
	pr.CloseWithError(errStopped)
	s := <-scan
	if s.err != nil && !errors.Is(s.err, errStopped) {
		// The scanner's verdict names the broken rule more precisely.
		return streamed{}, s.err
	}
	if err != nil {
		return streamed{}, err
	}
	if s.jwe.KID != out.KID || s.jwe.AuthTag != out.AuthTag {
		return streamed{}, fmt.Errorf("%w: stream parsed inconsistently", jose.ErrJWE)
	}
	return out, nil
}

func decryptCompact(br *bufio.Reader, keys KeyRing, maxPlain int64, w io.Writer) (streamed, error) {
	headerB64, err := readSegment(br, jose.MaxHeaderLen)
	if err != nil {
		return streamed{}, fmt.Errorf("read protected header: %w", err)
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(string(headerB64))
	if err != nil {
		return streamed{}, fmt.Errorf("%w: protected header: %v", jose.ErrJWE, err)
	}
	var h jweHeader
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return streamed{}, fmt.Errorf("%w: protected header: %v", jose.ErrJWE, err)
	}
	if h.Alg != jose.AlgRSAOAEP256 || h.Enc != jose.EncA256GCM {
		return streamed{}, fmt.Errorf("%w: alg %q enc %q", jose.ErrJWE, h.Alg, h.Enc)
	}
	priv, err := keys.key(h.KID)
	if err != nil {
		return streamed{}, err
	}
	ek, err := readDecoded(br, maxKeySegment, "encrypted key")
	if err != nil {
		return streamed{}, err
	}
	cek, err := rsa.DecryptOAEP(sha256.New(), nil, priv, ek, nil)
	if err != nil {
		return streamed{}, fmt.Errorf("%w: unwrap content key: %v", jose.ErrDecrypt, err)
	}
	iv, err := readDecoded(br, maxIVSegment, "initialization vector")
	if err != nil {
		return streamed{}, err
	}
	var tagB64 string
	readTag := func() ([]byte, error) {
		b, err := io.ReadAll(io.LimitReader(br, maxTagSegment+1))
		if err != nil {
			return nil, fmt.Errorf("read authentication tag: %w", err)
		}
		if len(b) > maxTagSegment {
			return nil, fmt.Errorf("%w: authentication tag too long", jose.ErrJWE)
		}
		tagB64 = string(b)
		tag, err := base64.RawURLEncoding.DecodeString(tagB64)
		if err != nil {
			return nil, fmt.Errorf("%w: authentication tag: %v", jose.ErrJWE, err)
		}
		return tag, nil
	}
	ct := base64.NewDecoder(base64.RawURLEncoding, &untilDot{br: br})
	gcm, err := newGCMReader(cek, iv, headerB64, ct, readTag)
	if err != nil {
		return streamed{}, err
	}
	var plain io.Reader = gcm
	if h.Zip == "DEF" {
		plain = flate.NewReader(gcm)
	}
	lw := &limitWriter{w: w, n: maxPlain}
	n, err := io.Copy(lw, plain)
	if err != nil {
		return streamed{}, fmt.Errorf("decrypt: %w", err)
	}
	// The inflater may stop at the end of its stream; the tag is checked
	// only when the ciphertext is read to its end.
	if _, err := io.Copy(io.Discard, gcm); err != nil {
		return streamed{}, fmt.Errorf("decrypt: %w", err)
	}
	return streamed{KID: h.KID, AuthTag: tagB64, Size: n}, nil
}

// readSegment reads up to the next '.' (consumed, not returned).
func readSegment(br *bufio.Reader, max int) ([]byte, error) {
	var seg []byte
	for {
		b, err := br.ReadSlice('.')
		seg = append(seg, b...)
		if len(seg) > max+1 {
			return nil, fmt.Errorf("%w: segment longer than %d characters", jose.ErrJWE, max)
		}
		switch {
		case err == nil:
			return seg[:len(seg)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: compact JWE has fewer than five segments", jose.ErrJWE)
		default:
			return nil, err
		}
	}
}

func readDecoded(br *bufio.Reader, max int, name string) ([]byte, error) {
	seg, err := readSegment(br, max)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	b, err := base64.RawURLEncoding.DecodeString(string(seg))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", jose.ErrJWE, name, err)
	}
	return b, nil
}

// untilDot reads br up to the next '.', which it consumes, then reports EOF.
type untilDot struct {
	br   *bufio.Reader
	done bool
}

func (u *untilDot) Read(p []byte) (int, error) {
	if u.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if u.br.Buffered() == 0 {
		if _, err := u.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: compact JWE has fewer than five segments", jose.ErrJWE)
			}
			return 0, err
		}
	}
	buf, _ := u.br.Peek(min(len(p), u.br.Buffered()))
	if i := bytes.IndexByte(buf, '.'); i >= 0 {
		n := copy(p, buf[:i])
		_, _ = u.br.Discard(i + 1)
		u.done = true
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
	n := copy(p, buf)
	_, _ = u.br.Discard(n)
	return n, nil
}

// errPlainTooLarge means a decrypted attachment exceeds its limit.
var errPlainTooLarge = errors.New("plaintext exceeds the size limit")

// limitWriter passes at most n bytes to w.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errPlainTooLarge
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}
