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
	return b.PutChecked(ctx, key, append(CheckedBuffer(len(value)), value...))
}

// CheckedHeaderLen is the length of a checked entry's digest line.
const CheckedHeaderLen = len(checkedPrefix) + (sha256.Size+2)/3*4 + 1 // padded base64 of the digest, '\n'

// CheckedBuffer returns a buffer for a value of n bytes to be appended
// to and written with PutChecked, which fills in the digest line it
// holds room for: the value is then not copied once more.
func CheckedBuffer(n int) []byte {
	return make([]byte, CheckedHeaderLen, CheckedHeaderLen+n)
}

// PutChecked writes entry, a CheckedBuffer with the value appended, as
// PutCheckedState writes the value.
func (b *Bus) PutChecked(ctx context.Context, key string, entry []byte) (uint64, error) {
	if len(entry) < CheckedHeaderLen {
		return 0, fmt.Errorf("put state %s: entry shorter than its digest line", key)
	}
	sum := sha256.Sum256(entry[CheckedHeaderLen:])
	copy(entry, checkedPrefix)
	base64.URLEncoding.Encode(entry[len(checkedPrefix):CheckedHeaderLen-1], sum[:])
	entry[CheckedHeaderLen-1] = '\n'
	return b.PutState(ctx, key, entry)
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
