package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound means the object or key does not exist.
var ErrNotFound = errors.New("not found")

// ErrRevisionMismatch means a key-value write expected another revision: a
// concurrent writer got there first.
var ErrRevisionMismatch = errors.New("revision mismatch")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	// Name is the object's name in BucketPayloads.
	Name string
	// Size in bytes.
	Size uint64
	// Chunks is the number of messages the object is stored in.
	Chunks uint32
	// Digest is "SHA-256=" and the base64url SHA-256 of the content.
	Digest string
	// ModTime is when the object was stored.
	ModTime time.Time
}

// payloads returns the object store handle, looking it up once.
func (b *Bus) payloads(ctx context.Context) (jetstream.ObjectStore, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.objects != nil {
		return b.objects, nil
	}
	obs, err := b.js.ObjectStore(ctx, BucketPayloads)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", BucketPayloads, err)
	}
	b.objects = obs
	return obs, nil
}

// stateBucket returns the key-value handle, looking it up once.
func (b *Bus) stateBucket(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != nil {
		return b.state, nil
	}
	kv, err := b.js.KeyValue(ctx, BucketState)
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", BucketState, err)
	}
	b.state = kv
	return kv, nil
}

// PutObject stores r under name in BucketPayloads, replacing an object of the
// same name. It streams: r is read and sent one chunk (128 KiB) at a time, so
// memory use does not grow with the object.
func (b *Bus) PutObject(ctx context.Context, name string, r io.Reader) (ObjectInfo, error) {
	if name == "" {
		return ObjectInfo{}, errors.New("put object: empty name")
	}
	obs, err := b.payloads(ctx)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put object %s: %w", name, err)
	}
	info, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name}, r)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put object %s: %w", name, err)
	}
	return objectInfo(info), nil
}

// objectPrefetch is how many chunks (128 KiB each) a reader of an object
// asks the server for at a time: all it holds for a slow reader.
const objectPrefetch = 8

// GetObject opens the object stored under name. The reader streams the
// chunks and checks the digest at the end: a corrupted object fails the last
// Read. The caller closes it.
//
// The chunks are pulled a few at a time as the caller reads, so memory does
// not grow with the object even when the caller reads slowly (the object
// store's own Get pushes chunks ahead of a slow reader up to JetStream's
// 32 MiB flow-control window). ctx bounds every Read.
func (b *Bus) GetObject(ctx context.Context, name string) (io.ReadCloser, error) {
	obs, err := b.payloads(ctx)
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", name, err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("get object %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("get object %s: %w", name, err)
	}
	if info.Opts != nil && info.Opts.Link != nil {
		return nil, fmt.Errorf("get object %s: is a link, which Amtsbote does not store", name)
	}
	r := &objectReader{name: name, size: info.Size, hash: sha256.New()}
	if r.digest, err = jetstream.DecodeObjectDigest(info.Digest); err != nil {
		return nil, fmt.Errorf("get object %s: digest: %w", name, err)
	}
	if info.Size == 0 {
		return r, nil
	}
	cons, err := b.js.OrderedConsumer(ctx, "OBJ_"+BucketPayloads, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$O." + BucketPayloads + ".C." + info.NUID},
	})
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", name, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(objectPrefetch))
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", name, err)
	}
	r.next = func() (jetstream.Msg, error) { return it.Next(jetstream.NextContext(ctx)) }
	r.stop = it.Stop
	return r, nil
}

// objectReader reads an object's chunks in order as they are pulled.
type objectReader struct {
	name   string
	next   func() (jetstream.Msg, error)
	stop   func()
	buf    []byte
	read   uint64
	size   uint64
	hash   hash.Hash
	digest []byte
	err    error
}

func (r *objectReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 && r.err == nil {
		if r.read == r.size {
			r.err = io.EOF
			if !bytes.Equal(r.hash.Sum(nil), r.digest) {
				r.err = fmt.Errorf("get object %s: %w", r.name, jetstream.ErrDigestMismatch)
			}
			r.Close()
			break
		}
		msg, err := r.next()
		if err != nil {
			r.err = fmt.Errorf("get object %s: %w", r.name, err)
			r.Close()
			break
		}
		data := msg.Data()
		r.read += uint64(len(data))
		r.hash.Write(data)
		r.buf = data
		meta, err := msg.Metadata()
		switch {
		case err != nil:
			r.err = fmt.Errorf("get object %s: chunk metadata: %w", r.name, err)
		case r.read > r.size, r.read == r.size && meta.NumPending > 0:
			r.err = fmt.Errorf("get object %s: chunks hold more than its %d bytes: %w", r.name, r.size, jetstream.ErrDigestMismatch)
		case r.read < r.size && meta.NumPending == 0:
			// Waiting would never end: a chunk is missing.
			r.err = fmt.Errorf("get object %s: chunks hold %d of its %d bytes: %w", r.name, r.read, r.size, jetstream.ErrDigestMismatch)
		}
		if r.err != nil {
			r.buf = nil
			r.Close()
		}
	}
	if len(r.buf) == 0 {
		return 0, r.err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close stops pulling chunks. It is safe to call more than once.
func (r *objectReader) Close() error {
	if r.stop != nil {
		r.stop()
		r.stop = nil
	}
	if r.err == nil {
		r.err = errors.New("get object " + r.name + ": reader closed")
	}
	return nil
}

// StatObject describes the object stored under name.
func (b *Bus) StatObject(ctx context.Context, name string) (ObjectInfo, error) {
	obs, err := b.payloads(ctx)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat object %s: %w", name, err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return ObjectInfo{}, fmt.Errorf("stat object %s: %w", name, ErrNotFound)
		}
		return ObjectInfo{}, fmt.Errorf("stat object %s: %w", name, err)
	}
	return objectInfo(info), nil
}

// DeleteObject removes the object stored under name and its chunks.
func (b *Bus) DeleteObject(ctx context.Context, name string) error {
	obs, err := b.payloads(ctx)
	if err != nil {
		return fmt.Errorf("delete object %s: %w", name, err)
	}
	if err := obs.Delete(ctx, name); err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("delete object %s: %w", name, ErrNotFound)
		}
		return fmt.Errorf("delete object %s: %w", name, err)
	}
	return nil
}

func objectInfo(i *jetstream.ObjectInfo) ObjectInfo {
	return ObjectInfo{Name: i.Name, Size: i.Size, Chunks: i.Chunks, Digest: i.Digest, ModTime: i.ModTime}
}

// StateEntry is one value in BucketState.
type StateEntry struct {
	// Key of the entry.
	Key string
	// Value as stored.
	Value []byte
	// Revision to pass to UpdateState for an optimistic write.
	Revision uint64
	// Created is when this revision was written.
	Created time.Time
}

// GetState reads key from BucketState.
func (b *Bus) GetState(ctx context.Context, key string) (StateEntry, error) {
	kv, err := b.stateBucket(ctx)
	if err != nil {
		return StateEntry{}, fmt.Errorf("get state %s: %w", key, err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return StateEntry{}, fmt.Errorf("get state %s: %w", key, kvError(err))
	}
	return StateEntry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Created: e.Created()}, nil
}

// PutState writes key unconditionally and returns the new revision.
func (b *Bus) PutState(ctx context.Context, key string, value []byte) (uint64, error) {
	kv, err := b.stateBucket(ctx)
	if err != nil {
		return 0, fmt.Errorf("put state %s: %w", key, err)
	}
	rev, err := kv.Put(ctx, key, value)
	if err != nil {
		return 0, fmt.Errorf("put state %s: %w", key, kvError(err))
	}
	return rev, nil
}

// CreateState writes key only if it does not exist (or was deleted) and
// returns the revision; ErrRevisionMismatch if it exists.
func (b *Bus) CreateState(ctx context.Context, key string, value []byte) (uint64, error) {
	kv, err := b.stateBucket(ctx)
	if err != nil {
		return 0, fmt.Errorf("create state %s: %w", key, err)
	}
	rev, err := kv.Create(ctx, key, value)
	if err != nil {
		return 0, fmt.Errorf("create state %s: %w", key, kvError(err))
	}
	return rev, nil
}

// UpdateState writes key only if its current revision is revision and
// returns the new one; ErrRevisionMismatch if another write came first.
func (b *Bus) UpdateState(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	kv, err := b.stateBucket(ctx)
	if err != nil {
		return 0, fmt.Errorf("update state %s: %w", key, err)
	}
	rev, err := kv.Update(ctx, key, value, revision)
	if err != nil {
		return 0, fmt.Errorf("update state %s at revision %d: %w", key, revision, kvError(err))
	}
	return rev, nil
}

// DeleteState removes key. Deleting a missing key is not an error.
func (b *Bus) DeleteState(ctx context.Context, key string) error {
	kv, err := b.stateBucket(ctx)
	if err != nil {
		return fmt.Errorf("delete state %s: %w", key, err)
	}
	if err := kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("delete state %s: %w", key, kvError(err))
	}
	return nil
}

// kvError maps JetStream key-value errors to this package's sentinels.
func kvError(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%w: %w", ErrRevisionMismatch, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("%w: %w", ErrRevisionMismatch, err)
	}
	return err
}
