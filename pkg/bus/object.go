package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// ErrNotFound means the object or key does not exist.
var ErrNotFound = errors.New("not found")

// ErrCorrupt means a stored object's chunks do not add up to its size and
// digest: a chunk is missing, repeated, reordered or changed. Retrying the
// read does not help.
var ErrCorrupt = errors.New("corrupt object")

// errDigest is what a read of a corrupt object fails with; it matches
// ErrCorrupt and jetstream.ErrDigestMismatch.
var errDigest = fmt.Errorf("%w: %w", ErrCorrupt, jetstream.ErrDigestMismatch)

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
// same name, in the object store's format. It streams: r is read one chunk
// (objectChunk) at a time and at most putWindow chunks are unacknowledged, so
// memory use does not grow with the object.
//
// Chunks published while the stream's leader changes could be stored twice
// or not at all although every publish was acknowledged; so each chunk
// carries a message id (a repeated publish is stored once), the
// acknowledgements must come in the chunks' order, and the stream's leader
// must count as many chunks as were sent before the description that makes
// the object visible is written, and hold that description after. An upload
// that fails any of these leaves no chunks and the earlier object of the
// name in place, and PutObject fails, with ErrCorrupt where the stream
// disagreed; r is consumed, so the caller retries with the content again.
func (b *Bus) PutObject(ctx context.Context, name string, r io.Reader) (ObjectInfo, error) {
	if name == "" {
		return ObjectInfo{}, errors.New("put object: empty name")
	}
	if _, err := b.payloads(ctx); err != nil {
		return ObjectInfo{}, fmt.Errorf("put object %s: %w", name, err)
	}
	old, err := b.description(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return ObjectInfo{}, fmt.Errorf("put object %s: %w", name, err)
	}
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: objectChunk}},
		Bucket:     BucketPayloads,
		NUID:       nuid.Next(),
	}
	subject := chunkSubject(info.NUID)
	if err := b.putChunks(ctx, subject, &info, r); err != nil {
		b.purgeAfterFailure(ctx, subject)
		return ObjectInfo{}, fmt.Errorf("put object %s: %w", name, err)
	}
	if err := b.putDescription(ctx, &info); err != nil {
		b.purgeAfterFailure(ctx, subject)
		return ObjectInfo{}, fmt.Errorf("put object %s: %w", name, err)
	}
	if old.NUID != "" && old.NUID != info.NUID {
		// The old chunks are unreachable now; one left behind costs space only.
		_ = b.purge(ctx, StreamPayloads, chunkSubject(old.NUID))
	}
	return objectInfo(&info), nil
}

// objectChunk is the size of an object's chunks: twice the object store's
// default, which halves the messages, acknowledgements and writes of a
// large upload. Reading does not depend on it: objects stored in other
// sizes stay readable.
const objectChunk = 256 << 10

// putWindow is how many chunks of one upload are unacknowledged at most:
// 2 MiB in flight keeps the stream busy without buffering the object.
const putWindow = 8

// putChunk is one published chunk awaiting its acknowledgement; its buffer
// is reused only after that, since a publish may be sent again.
type putChunk struct {
	ack jetstream.PubAckFuture
	buf []byte
}

// putChunks publishes r's content as chunks on subject and fills in the
// size, chunk count and digest of info once the stream acknowledged each
// chunk in order and its leader counts exactly those.
func (b *Bus) putChunks(ctx context.Context, subject string, info *jetstream.ObjectInfo, r io.Reader) error {
	h := sha256.New()
	var (
		inflight []putChunk
		free     [][]byte
		last     uint64
	)
	settle := func() error {
		c := inflight[0]
		inflight = inflight[1:]
		timer := time.NewTimer(leaderGetTimeout)
		defer timer.Stop()
		select {
		case ack := <-c.ack.Ok():
			if ack.Stream != StreamPayloads || ack.Sequence <= last {
				return fmt.Errorf("chunk acknowledged out of order (%s %d after %d): %w", ack.Stream, ack.Sequence, last, ErrCorrupt)
			}
			last = ack.Sequence
		case err := <-c.ack.Err():
			return fmt.Errorf("chunk not stored: %w", err)
		case <-timer.C:
			return errors.New("chunk not acknowledged in time")
		case <-ctx.Done():
			return ctx.Err()
		}
		free = append(free, c.buf)
		return nil
	}
	// settleAll waits for what is in flight, so that nothing lands after a
	// purge of the partial upload.
	settleAll := func(err error) error {
		for len(inflight) > 0 {
			if serr := settle(); err == nil {
				err = serr
			}
		}
		return err
	}
	for {
		if len(inflight) == putWindow {
			if err := settle(); err != nil {
				return settleAll(err)
			}
		}
		var buf []byte
		if n := len(free); n > 0 {
			buf, free = free[n-1], free[:n-1]
		} else {
			buf = make([]byte, objectChunk)
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			h.Write(buf[:n])
			m := &nats.Msg{Subject: subject, Data: buf[:n], Header: nats.Header{}}
			m.Header.Set(jetstream.MsgIDHeader, info.NUID+"."+strconv.FormatUint(uint64(info.Chunks), 10))
			f, err := b.js.PublishMsgAsync(m)
			if err != nil {
				return settleAll(fmt.Errorf("publish chunk: %w", err))
			}
			inflight = append(inflight, putChunk{ack: f, buf: buf})
			info.Chunks++
			info.Size += uint64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return settleAll(rerr)
		}
	}
	if err := settleAll(nil); err != nil {
		return err
	}
	info.Digest = jetstream.GetObjectDigestValue(h)
	stored, err := b.subjectCount(ctx, StreamPayloads, subject)
	if err != nil {
		return err
	}
	if stored != uint64(info.Chunks) {
		return fmt.Errorf("sent %d chunks, the stream holds %d: %w", info.Chunks, stored, ErrCorrupt)
	}
	return nil
}

// putDescription publishes info as its object's description, replacing
// the earlier one, and checks that the stream's leader holds it.
func (b *Bus) putDescription(ctx context.Context, info *jetstream.ObjectInfo) error {
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: metaSubject(info.Name), Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	ack, err := b.js.PublishMsg(ctx, m)
	if err != nil {
		return fmt.Errorf("publish description: %w", err)
	}
	got, err := b.description(ctx, info.Name)
	if err != nil {
		return fmt.Errorf("read description back: %w", err)
	}
	if got.NUID != info.NUID {
		return fmt.Errorf("description stored at %d, the stream holds another: %w", ack.Sequence, ErrCorrupt)
	}
	info.ModTime = got.ModTime
	return nil
}

// purgeAfterFailure removes the chunks of a failed upload, also when ctx
// is what ended it.
func (b *Bus) purgeAfterFailure(ctx context.Context, subject string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaderGetTimeout)
	defer cancel()
	_ = b.purge(ctx, StreamPayloads, subject)
}

// purge removes the messages on subject from stream.
func (b *Bus) purge(ctx context.Context, stream, subject string) error {
	body, err := json.Marshal(struct {
		Filter string `json:"filter"`
	}{subject})
	if err != nil {
		return err
	}
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+stream, body)
	if err != nil {
		return err
	}
	var resp struct {
		Error *jetstream.APIError `json:"error,omitempty"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("purge answer: %w", err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}

// subjectCount asks stream's leader how many messages it holds on subject.
func (b *Bus) subjectCount(ctx context.Context, stream, subject string) (uint64, error) {
	body, err := json.Marshal(struct {
		Filter string `json:"subjects_filter"`
	}{subject})
	if err != nil {
		return 0, err
	}
	msg, err := b.leaderRequest(ctx, "$JS.API.STREAM.INFO."+stream, body)
	if err != nil {
		return 0, fmt.Errorf("count chunks: %w", err)
	}
	var resp struct {
		Error *jetstream.APIError `json:"error,omitempty"`
		State struct {
			Subjects map[string]uint64 `json:"subjects"`
		} `json:"state"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("count chunks: stream info answer: %w", err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("count chunks: %w", resp.Error)
	}
	return resp.State.Subjects[subject], nil
}

// CheckObject returns the description of the object stored under name
// once the stream's leader holds as many chunks as it names, without
// reading them: ErrNotFound if there is none, ErrCorrupt if chunks are
// missing or repeated. A chunk changed in place is found only by reading
// the object (VerifyObject, GetObject).
func (b *Bus) CheckObject(ctx context.Context, name string) (ObjectInfo, error) {
	info, err := b.description(ctx, name)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("check object %s: %w", name, err)
	}
	stored, err := b.subjectCount(ctx, StreamPayloads, chunkSubject(info.NUID))
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("check object %s: %w", name, err)
	}
	if stored != uint64(info.Chunks) {
		return ObjectInfo{}, fmt.Errorf("check object %s: %d chunks stored of its %d: %w", name, stored, info.Chunks, errDigest)
	}
	return objectInfo(&info), nil
}

// VerifyObject reads the object stored under name to its end and returns
// its description once size and digest matched: ErrNotFound if there is
// none, ErrCorrupt if its chunks do not add up to it.
func (b *Bus) VerifyObject(ctx context.Context, name string) (ObjectInfo, error) {
	r, err := b.getObject(ctx, name)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer r.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		return ObjectInfo{}, err
	}
	return r.info, nil
}

// ReadObject reads the object stored under name whole, checked as
// GetObject's reader checks it, into one buffer of the object's size (up to
// maxWholePrealloc; a larger one grows as it is read).
func (b *Bus) ReadObject(ctx context.Context, name string) ([]byte, error) {
	r, err := b.getObject(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// bytes.MinRead spare, so that reading up to EOF needs no second buffer.
	buf := bytes.NewBuffer(make([]byte, 0, min(r.size, maxWholePrealloc)+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxWholePrealloc bounds what ReadObject allocates on the strength of an
// object's description alone.
const maxWholePrealloc = 16 << 20

// GetObject opens the object stored under name. The reader streams the
// chunks and checks the size and digest at the end: a corrupted object
// fails a Read with ErrCorrupt. The caller closes it.
//
// The reader asks for a few chunks at a time as the caller reads, so
// memory does not grow with the object even when the caller reads slowly,
// and a read uses no consumer: any number of reads, in a row or at once,
// leave nothing behind on the stream (the object store's own Get creates a
// consumer per read, which stays until the server notices it idle and
// counts against the stream's consumer limit meanwhile), and none waits
// for a fresh consumer's first pull, which in a cluster can go unanswered
// until its heartbeats are missed, 10 s later. The leader, not a replica
// that may lag, answers the object's description and whether a chunk
// follows where no replica has one. ctx bounds every Read.
func (b *Bus) GetObject(ctx context.Context, name string) (io.ReadCloser, error) {
	r, err := b.getObject(ctx, name)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (b *Bus) getObject(ctx context.Context, name string) (*objectReader, error) {
	info, err := b.description(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", name, err)
	}
	r := &objectReader{b: b, ctx: ctx, name: name, info: objectInfo(&info), subject: chunkSubject(info.NUID), size: info.Size, hash: sha256.New()}
	if r.digest, err = jetstream.DecodeObjectDigest(info.Digest); err != nil {
		return nil, fmt.Errorf("get object %s: digest: %w", name, err)
	}
	return r, nil
}

// description reads the description of the object name from the object
// stream's leader: a replica that is behind may not know an object the
// leader acknowledged. ErrNotFound if there is none.
func (b *Bus) description(ctx context.Context, name string) (jetstream.ObjectInfo, error) {
	var info jetstream.ObjectInfo
	raw, err := b.leaderGet(ctx, StreamPayloads, msgGetRequest{LastFor: metaSubject(name)})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return info, ErrNotFound
	}
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(raw.Data, &info); err != nil {
		return info, fmt.Errorf("description: %w", err)
	}
	if info.Deleted {
		return info, ErrNotFound
	}
	info.ModTime = raw.Time
	if info.Opts != nil && info.Opts.Link != nil {
		return info, errors.New("is a link, which Amtsbote does not store")
	}
	return info, nil
}

// chunkSubject is the subject of the chunks of the object with nuid.
func chunkSubject(nuid string) string { return "$O." + BucketPayloads + ".C." + nuid }

// metaSubject is the subject of the description of the object name, encoded
// as the object store encodes it.
func metaSubject(name string) string {
	return "$O." + BucketPayloads + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

// msgGetRequest is JetStream's STREAM.MSG.GET request: the first message
// at or after Seq on NextFor, or the last one on LastFor.
type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
}

// msgGetResponse is JetStream's answer to a msgGetRequest.
type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Header   []byte    `json:"hdrs"`
		Data     []byte    `json:"data"`
		Time     time.Time `json:"time"`
	} `json:"message,omitempty"`
}

// storedMsg is one message read from StreamPayloads.
type storedMsg struct {
	Sequence uint64
	Header   []byte
	Data     []byte
	Time     time.Time
}

// leaderGet asks StreamPayloads's leader for one message; ErrMsgNotFound if
// there is none. Direct gets would also be answered by replicas, which may
// not yet hold what the leader acknowledged.
func (b *Bus) leaderGet(ctx context.Context, stream string, req msgGetRequest) (storedMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return storedMsg{}, err
	}
	msg, err := b.leaderRequest(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return storedMsg{}, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return storedMsg{}, fmt.Errorf("message get answer: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return storedMsg{}, jetstream.ErrMsgNotFound
	case resp.Error != nil:
		return storedMsg{}, resp.Error
	case resp.Message == nil:
		return storedMsg{}, jetstream.ErrInvalidJetStreamResponse
	}
	return storedMsg{Sequence: resp.Message.Sequence, Header: resp.Message.Header, Data: resp.Message.Data, Time: resp.Message.Time}, nil
}

// chunkBatch is how many chunks one direct get asks for: a round trip per
// half MiB rather than per chunk; a reader holds two batches at most.
const chunkBatch = 2

// directBatchRequest is JetStream's DIRECT.GET request for up to Batch
// messages on NextFor from Seq on.
type directBatchRequest struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch,omitempty"`
}

// directChunks asks any replica of StreamPayloads for up to n messages on
// subject from seq on, in one request answered by a stream of messages
// with their raw data (one message from a server without batches, 2.10).
// A replica holds a prefix of what the leader holds, so what it sends is
// what the leader would; one that is behind sends fewer or none, and the
// caller asks the leader then. Any failure yields what arrived before it,
// perhaps nothing.
func (b *Bus) directChunks(ctx context.Context, seq uint64, subject string, n int) []storedMsg {
	if !batches(b.nc) {
		// Asked for a batch, such a server answers one message and no
		// end of batch, which would be waited for.
		n = 0
	}
	body, err := json.Marshal(directBatchRequest{Seq: seq, NextFor: subject, Batch: n})
	if err != nil {
		return nil
	}
	// Unanswered, the leader is asked instead.
	ctx, cancel := context.WithTimeout(ctx, leaderAttempt)
	defer cancel()
	// The batch and its closing status fit; a synchronous subscription's
	// channel of the client's default length would cost half a MiB per
	// request, as much again as the chunks it carries.
	ch := make(chan *nats.Msg, max(n, 1)+1)
	inbox := b.nc.NewInbox()
	sub, err := b.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest("$JS.API.DIRECT.GET."+StreamPayloads, inbox, body); err != nil {
		return nil
	}
	var out []storedMsg
	for len(out) < max(n, 1) {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return out
		}
		if m.Header.Get("Status") != "" {
			// 204 ends the batch; 404 means the replica has none; 503
			// means no replica answers direct gets.
			return out
		}
		got, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || got < seq || m.Header.Get(jetstream.SubjectHeader) != subject {
			return out
		}
		seq = got + 1
		out = append(out, storedMsg{Sequence: got, Data: m.Data})
	}
	return out
}

const (
	// leaderGetTimeout bounds a request to a stream's leader when ctx has
	// no deadline.
	leaderGetTimeout = 10 * time.Second
	// leaderAttempt bounds one try of it: a request that reached a leader
	// as it stepped down stays unanswered and is sent again.
	leaderAttempt = 4 * time.Second
)

// leaderRequest sends a JetStream API read that its stream's leader
// answers, again and again until it is answered or ctx ends.
func (b *Bus) leaderRequest(ctx context.Context, subject string, body []byte) (*nats.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, leaderGetTimeout)
		defer cancel()
	}
	for {
		actx, cancel := context.WithTimeout(ctx, leaderAttempt)
		msg, err := b.nc.RequestWithContext(actx, subject, body)
		cancel()
		switch {
		case err == nil:
			return msg, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, nats.ErrNoResponders):
			// A server restarting has no JetStream yet.
			if err := pause(ctx, 100*time.Millisecond); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// objectReader reads an object's chunks in stream order, a batch ahead.
type objectReader struct {
	b       *Bus
	ctx     context.Context
	name    string
	info    ObjectInfo
	subject string
	next    uint64 // stream sequence to look for the next chunk from
	ahead   []storedMsg
	pending chan []storedMsg // the batch after ahead, asked for already
	done    bool             // the last chunk is read and the object checked
	buf     []byte
	read    uint64
	size    uint64
	hash    hash.Hash
	digest  []byte
	err     error
}

func (r *objectReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 && r.err == nil {
		r.err = r.fill()
	}
	if len(r.buf) == 0 {
		return 0, r.err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// fill reads the next chunk into buf, or returns io.EOF once the chunks
// added up to the object's size and digest and no further chunk follows.
func (r *objectReader) fill() error {
	if r.done {
		return io.EOF
	}
	if len(r.ahead) == 0 && r.read < r.size {
		r.ahead = r.batch()
	}
	var m storedMsg
	var err error
	if len(r.ahead) > 0 {
		m, r.ahead = r.ahead[0], r.ahead[1:]
	} else {
		// No replica had the next chunk, or the object is empty: the
		// leader decides whether one follows.
		m, err = r.b.leaderGet(r.ctx, StreamPayloads, msgGetRequest{Seq: r.next, NextFor: r.subject})
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound) && r.read < r.size:
		return fmt.Errorf("get object %s: chunks hold %d of its %d bytes: %w", r.name, r.read, r.size, errDigest)
	case errors.Is(err, jetstream.ErrMsgNotFound):
		if !bytes.Equal(r.hash.Sum(nil), r.digest) {
			return fmt.Errorf("get object %s: %w", r.name, errDigest)
		}
		return io.EOF
	case err != nil:
		return fmt.Errorf("get object %s: %w", r.name, err)
	}
	r.next = m.Sequence + 1
	r.read += uint64(len(m.Data))
	if r.read > r.size {
		return fmt.Errorf("get object %s: chunks hold more than its %d bytes: %w", r.name, r.size, errDigest)
	}
	r.hash.Write(m.Data)
	if r.read == r.size {
		if err := r.end(); err != nil {
			return err
		}
	}
	r.buf = m.Data
	return nil
}

// batch returns the next batch of chunks from r.next on, the one asked for
// ahead if there is one, and asks for the batch after it while the caller
// reads this one: a round trip to a replica then overlaps the reading
// rather than adding to it.
func (r *objectReader) batch() []storedMsg {
	var got []storedMsg
	if r.pending != nil {
		got, r.pending = <-r.pending, nil
	} else {
		got = r.b.directChunks(r.ctx, r.next, r.subject, chunkBatch)
	}
	if len(got) == 0 {
		return nil
	}
	held := r.read
	for _, m := range got {
		held += uint64(len(m.Data))
	}
	if held < r.size {
		next, ch := got[len(got)-1].Sequence+1, make(chan []storedMsg, 1)
		go func() { ch <- r.b.directChunks(r.ctx, next, r.subject, chunkBatch) }()
		r.pending = ch
	}
	return got
}

// end asks the leader whether a chunk follows the last one and checks the
// digest, before the last chunk is handed out: the caller's last Read
// returns the object's end without a round trip, so an HTTP handler is done
// once its client has every byte, and a client that then goes away does
// not cut it off.
func (r *objectReader) end() error {
	_, err := r.b.leaderGet(r.ctx, StreamPayloads, msgGetRequest{Seq: r.next, NextFor: r.subject})
	switch {
	case err == nil:
		return fmt.Errorf("get object %s: chunks hold more than its %d bytes: %w", r.name, r.size, errDigest)
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("get object %s: %w", r.name, err)
	case !bytes.Equal(r.hash.Sum(nil), r.digest):
		return fmt.Errorf("get object %s: %w", r.name, errDigest)
	}
	r.done = true
	return nil
}

// Close ends the reader. It holds nothing on the server but a batch asked
// for ahead, which ends with its answer or the reader's context, so this
// only makes further Reads fail. It is safe to call more than once.
func (r *objectReader) Close() error {
	if r.err == nil {
		r.err = errors.New("get object " + r.name + ": reader closed")
	}
	r.buf, r.ahead, r.pending = nil, nil, nil
	return nil
}

// ReasonCorruptObject is the dead-letter reason of an object whose chunks
// do not add up to its size and digest.
const ReasonCorruptObject = "corrupt-object"

// HeaderDeadObject names the object a dead letter of ReasonCorruptObject is
// about.
const HeaderDeadObject = "Amtsbote-Dead-Object"

// DeadLetterObject records in DEAD, under ab.dead.corrupt-object, that the
// object stored under name cannot be delivered because of cause, so that an
// operator learns of it and can ask for it again. The letter carries the
// reason headers and the object's name and no data; repeated reads of the
// object write one letter per duplicates window.
func (b *Bus) DeadLetterObject(ctx context.Context, name string, cause error) error {
	m := nats.NewMsg(PrefixDead + "." + ReasonCorruptObject)
	m.Header.Set(HeaderDeadReason, ReasonCorruptObject)
	m.Header.Set(HeaderDeadError, headerText(cause.Error(), maxDeadError))
	m.Header.Set(HeaderDeadObject, headerText(name, maxDeadError))
	if _, err := b.js.PublishMsg(ctx, m, jetstream.WithMsgID("dead.object."+name)); err != nil {
		return fmt.Errorf("dead-letter object %s: %w", name, err)
	}
	return nil
}

// StatObject describes the object stored under name.
func (b *Bus) StatObject(ctx context.Context, name string) (ObjectInfo, error) {
	info, err := b.description(ctx, name)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat object %s: %w", name, err)
	}
	return objectInfo(&info), nil
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

// stateStream is the stream that holds BucketState.
const stateStream = "KV_" + BucketState

// stateSubject is the subject of key in stateStream.
func stateSubject(key string) string { return "$KV." + BucketState + "." + key }

// GetState reads key from BucketState.
func (b *Bus) GetState(ctx context.Context, key string) (StateEntry, error) {
	kv, err := b.stateBucket(ctx)
	if err != nil {
		return StateEntry{}, fmt.Errorf("get state %s: %w", key, err)
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Any replica answers a get, and one that is behind, as a node
		// just back after a failure is, says a key is missing that the
		// leader holds: the leader decides.
		return b.leaderState(ctx, key)
	}
	if err != nil {
		return StateEntry{}, fmt.Errorf("get state %s: %w", key, kvError(err))
	}
	return StateEntry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Created: e.Created()}, nil
}

// leaderState reads key from the state bucket's stream leader.
func (b *Bus) leaderState(ctx context.Context, key string) (StateEntry, error) {
	m, err := b.leaderGet(ctx, stateStream, msgGetRequest{LastFor: stateSubject(key)})
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return StateEntry{}, fmt.Errorf("get state %s: %w", key, ErrNotFound)
	case err != nil:
		return StateEntry{}, fmt.Errorf("get state %s: %w", key, err)
	case bytes.Contains(m.Header, []byte("KV-Operation")):
		// A delete or purge marker.
		return StateEntry{}, fmt.Errorf("get state %s: %w", key, ErrNotFound)
	}
	return StateEntry{Key: key, Value: m.Data, Revision: m.Sequence, Created: m.Time}, nil
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
//
// The key's messages are purged from the bucket's stream, which leaves no
// marker: a key-value delete or purge writes one per key that stays for
// the bucket's TTL, and a watch of the outbox's prefix would be handed
// the marker of every entry ever signed, reading the whole bucket from
// disk each time. Nothing watches for the deletion of a state key.
func (b *Bus) DeleteState(ctx context.Context, key string) error {
	if err := b.purge(ctx, stateStream, stateSubject(key)); err != nil {
		return fmt.Errorf("delete state %s: %w", key, err)
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
