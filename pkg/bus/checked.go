package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
)

// checkedPrefix starts a checked entry's first line, which holds the
// SHA-256 digest of the rest, in the object store's notation.
const checkedPrefix = "SHA-256="

// PutCheckedState writes value under key in the state bucket behind a line
// with its SHA-256 digest: content small enough for one message (a sealed
// payload of at most sealed.InlineLimit) is stored in one write instead of
// an object's chunks and description, and is still checked on reading.
func (b *Bus) PutCheckedState(ctx context.Context, key string, value []byte) (uint64, error) {
	sum := sha256.Sum256(value)
	enc := base64.URLEncoding
	buf := make([]byte, 0, len(checkedPrefix)+enc.EncodedLen(len(sum))+1+len(value))
	buf = append(buf, checkedPrefix...)
	buf = enc.AppendEncode(buf, sum[:])
	buf = append(buf, '\n')
	buf = append(buf, value...)
	return b.PutState(ctx, key, buf)
}

// GetCheckedState reads what PutCheckedState wrote under key: ErrNotFound
// if there is nothing, ErrCorrupt if it does not match its digest.
func (b *Bus) GetCheckedState(ctx context.Context, key string) ([]byte, error) {
	e, err := b.GetState(ctx, key)
	if err != nil {
		return nil, err
	}
	value, err := checkedValue(e.Value)
	if err != nil {
		return nil, fmt.Errorf("get state %s: %w", key, err)
	}
	return value, nil
}

// checkedValue returns the value of a checked entry after its digest line.
func checkedValue(entry []byte) ([]byte, error) {
	head, value, ok := bytes.Cut(entry, []byte{'\n'})
	digest, found := bytes.CutPrefix(head, []byte(checkedPrefix))
	if !ok || !found {
		return nil, fmt.Errorf("%w: no digest line", ErrCorrupt)
	}
	sum := sha256.Sum256(value)
	if subtle.ConstantTimeCompare(digest, base64.URLEncoding.AppendEncode(nil, sum[:])) != 1 {
		return nil, fmt.Errorf("%w: digest mismatch", ErrCorrupt)
	}
	return value, nil
}
