package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// chunksOf returns the object stream, the subject of the chunks of the
// stored object name and its description.
func chunksOf(t *testing.T, b *bus.Bus, name string) (jetstream.Stream, string, *jetstream.ObjectInfo) {
	t.Helper()
	ctx := context.Background()
	js := b.JetStream()
	obs, err := js.ObjectStore(ctx, bus.BucketPayloads)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, bus.StreamPayloads)
	if err != nil {
		t.Fatal(err)
	}
	return stream, "$O." + bus.BucketPayloads + ".C." + info.NUID, info
}

// corruptObject damages the stored object name behind the store's back as
// a publish repeated during a leader change does: its first chunk is
// stored again in place of its last one (a one-chunk object gets a changed
// byte instead).
func corruptObject(t *testing.T, b *bus.Bus, name string) {
	t.Helper()
	ctx := context.Background()
	stream, subject, info := chunksOf(t, b, name)
	first, err := stream.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		t.Fatal(err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(first.Data)
	if info.Chunks == 1 {
		data[len(data)/2] ^= 1
	}
	if err := stream.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().Publish(ctx, subject, data); err != nil {
		t.Fatal(err)
	}
}

// corruptState flips a bit of the value stored under key, behind its
// digest line.
func corruptState(t *testing.T, b *bus.Bus, key string) {
	t.Helper()
	ctx := context.Background()
	e, err := b.GetState(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(e.Value)
	data[len(data)-2] ^= 1
	if _, err := b.PutState(ctx, key, data); err != nil {
		t.Fatal(err)
	}
}

// loseChunk deletes the last chunk of the stored object name, as a store
// that lost a message would.
func loseChunk(t *testing.T, b *bus.Bus, name string) {
	t.Helper()
	ctx := context.Background()
	stream, subject, _ := chunksOf(t, b, name)
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
}

// withAttachment creates a submission to d with one attachment of plain
// and seals its attachment, metadata and data.
func (f *flowEnv) withAttachment(t *testing.T, d store.Destination, sender string, plain []byte) (sealedSubmission, string) {
	t.Helper()
	s := sealedSubmission{dest: d, attachments: map[string]string{}}
	aid := newUUID(t)
	s.order = []string{aid}
	s.attachments[aid] = seal(t, plain, d.EncryptionKID)
	s.created = f.create(t, sender, createBody(d, aid))
	s.metadata = seal(t, []byte(`{"contentStructure":{"data":{"submissionSchema":{"schemaUri":"https://schema.fitko.de/fim/s00000096_1.0.schema.json","mimeType":"application/json"}}}}`), d.EncryptionKID)
	s.data = seal(t, []byte(`{"name":"Erika Mustermann"}`), d.EncryptionKID)
	return s, aid
}

// TestTwoUploadsAtOnce: of two uploads of one attachment at once, one may
// store the content and the other the tag. The submit finds them apart
// and asks for the attachment again, so that no receiver is handed a tag
// its content does not have; the upload again mends it.
func TestTwoUploadsAtOnce(t *testing.T) {
	f := newFlowEnv(t, flowtest.Backends()[0].Open(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	s, aid := f.withAttachment(t, d, sender, []byte("Anlage"))
	sid := s.SubmissionID

	// The first upload's content, the second's tag: as when the second
	// wrote its content first and its tag last.
	f.upload(t, sender, sid, aid, seal(t, []byte("Anlage, zweite Fassung"), d.EncryptionKID)).want(t, http.StatusNoContent)
	kept, err := f.bus.GetState(context.Background(), sealed.AttachmentUploadKey(sid, aid))
	must(t, err)
	f.upload(t, sender, sid, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	_, err = f.bus.PutState(context.Background(), sealed.AttachmentUploadKey(sid, aid), kept.Value)
	must(t, err)

	p := f.submit(t, sender, s).problem(t, http.StatusUnprocessableEntity, problem.TypeMissingAttachments, "attachments")
	if got, _ := p.Extra["missingAttachments"].([]any); !slices.Equal(got, []any{aid}) || !strings.Contains(p.Detail, "uploaded twice at once") {
		t.Errorf("problem %+v, want attachment %s named as uploaded twice", p, aid)
	}
	f.upload(t, sender, sid, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	f.submit(t, sender, s).want(t, http.StatusAccepted)

	// An upload to a gateway of an earlier release kept the tag alone.
	s, aid = f.withAttachment(t, d, sender, []byte("Anlage"))
	f.upload(t, sender, s.SubmissionID, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	must(t, f.bus.DeleteState(context.Background(), sealed.AttachmentUploadKey(s.SubmissionID, aid)))
	f.submit(t, sender, s).want(t, http.StatusAccepted)
}

// TestCorruptObjects: an attachment that lost a chunk after its upload
// stops the submit with a problem naming it; one damaged after the
// submit, and a damaged payload, are answered 500 problem+json and
// dead-lettered, never 200.
func TestCorruptObjects(t *testing.T) {
	f := newFlowEnv(t, flowtest.Backends()[0].Open(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	receiver := f.token("subscribe:destination:" + d.ID)

	// Three chunks.
	s, aid := f.withAttachment(t, d, sender, bytes.Repeat([]byte("Anlage "), 80000))
	sid := s.SubmissionID
	attachment := sealed.AttachmentObject(sid, aid)
	path := "/v1/submissions/" + sid + "/attachments/" + aid

	f.upload(t, sender, sid, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	loseChunk(t, f.bus, attachment)
	p := f.submit(t, sender, s).problem(t, http.StatusUnprocessableEntity, problem.TypeMissingAttachments, "attachments")
	if got, _ := p.Extra["missingAttachments"].([]any); !slices.Equal(got, []any{aid}) {
		t.Errorf("missingAttachments %v, want [%s]", p.Extra["missingAttachments"], aid)
	}
	if _, err := f.st.Idempotency(context.Background(), "submit:"+sid); err == nil {
		t.Error("a refused submit left its record")
	}

	f.upload(t, sender, sid, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	f.route(t, sid)
	got := f.call(t, http.MethodGet, path, receiver, "", nil)
	got.want(t, http.StatusOK)
	if string(got.body) != s.attachments[aid] {
		t.Fatalf("attachment read back as %d bytes, want the %d uploaded", len(got.body), len(s.attachments[aid]))
	}

	for _, tt := range []struct {
		name, object, path string
		corrupt            func(*testing.T, *bus.Bus, string)
	}{
		{"attachment", attachment, path, corruptObject},
		{"payload", sealed.PayloadKey(sid), "/v1/submissions/" + sid, corruptState},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.corrupt(t, f.bus, tt.object)
			f.call(t, http.MethodGet, tt.path, receiver, "", nil).problem(t, http.StatusInternalServerError, problem.TypeInternal, "")
			dead := deadLetterOf(t, f.bus, tt.object)
			if got := dead.Header.Get(bus.HeaderDeadReason); got != bus.ReasonCorruptObject {
				t.Errorf("dead letter reason %q", got)
			}
		})
	}
}

// deadLetterOf returns the dead letter written for the object name.
func deadLetterOf(t *testing.T, b *bus.Bus, name string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := b.JetStream().Stream(ctx, bus.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("no dead letter for %s: %v", name, err)
		}
		if m.Header.Get(bus.HeaderDeadObject) == name {
			return m
		}
	}
}

// TestCorruptLargeAttachment: an attachment too large to be read whole
// first is streamed; damaged after the submit, its answer is cut short of
// its Content-Length, so the client sees an error and not a shorter
// attachment, and it is dead-lettered.
func TestCorruptLargeAttachment(t *testing.T) {
	f := newFlowEnv(t, flowtest.Backends()[0].Open(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	receiver := f.token("subscribe:destination:" + d.ID)

	s, aid := f.withAttachment(t, d, sender, bytes.Repeat([]byte("Bauplan "), 300000))
	sid := s.SubmissionID
	path := "/v1/submissions/" + sid + "/attachments/" + aid

	f.upload(t, sender, sid, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	f.route(t, sid)
	if got := f.call(t, http.MethodGet, path, receiver, "", nil); got.status != http.StatusOK || string(got.body) != s.attachments[aid] {
		t.Fatalf("intact attachment: status %d, %d bytes, want 200 and the %d uploaded", got.status, len(got.body), len(s.attachments[aid]))
	}

	corruptObject(t, f.bus, sealed.AttachmentObject(sid, aid))
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+receiver)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("corrupt attachment read without error: status %d, %d bytes", resp.StatusCode, len(body))
	}
	if int64(len(body)) >= resp.ContentLength {
		t.Errorf("corrupt attachment: %d bytes of the %d announced", len(body), resp.ContentLength)
	}
	dead := deadLetterOf(t, f.bus, sealed.AttachmentObject(sid, aid))
	if got := dead.Header.Get(bus.HeaderDeadReason); got != bus.ReasonCorruptObject {
		t.Errorf("dead letter reason %q", got)
	}
}

// TestUploadDuringSubmit: an upload that replaces an attachment and is
// still streaming when the submission is submitted is refused when it
// ends, and the attachment stays the one whose tag the submit signed; an
// upload that holds its commit entry makes a submit wait for it, and a
// submit under way refuses uploads.
func TestUploadDuringSubmit(t *testing.T) {
	f := newFlowEnv(t, flowtest.Backends()[0].Open(t))
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	receiver := f.token("subscribe:destination:" + d.ID)
	s, aid := f.withAttachment(t, d, sender, []byte("Anlage"))
	sid := s.SubmissionID
	f.upload(t, sender, sid, aid, s.attachments[aid]).want(t, http.StatusNoContent)

	second := seal(t, []byte("Anlage, zweite Fassung"), d.EncryptionKID)
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPut, f.srv.URL+"/v1/submissions/"+sid+"/attachments/"+aid, pr)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+sender)
	req.Header.Set("Content-Type", "application/jose")
	answered := make(chan int, 1)
	go func() {
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	// The gateway reads the upload's first part, then the submit comes.
	_, err = pw.Write([]byte(second[:len(second)-8]))
	must(t, err)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	_, err = pw.Write([]byte(second[len(second)-8:]))
	must(t, err)
	must(t, pw.Close())
	if status := <-answered; status != http.StatusUnprocessableEntity {
		t.Errorf("the upload that ended after the submit was answered %d, want 422", status)
	}
	f.route(t, sid)
	got := f.call(t, http.MethodGet, "/v1/submissions/"+sid+"/attachments/"+aid, receiver, "", nil)
	got.want(t, http.StatusOK)
	if string(got.body) != s.attachments[aid] {
		t.Errorf("the receiver is handed the upload that ended after the submit, not the one the submit signed")
	}

	// A commit entry held (an upload making its object the content) holds
	// the submit until it is given back.
	ctx := context.Background()
	s, aid = f.withAttachment(t, d, sender, []byte("Anlage"))
	f.upload(t, sender, s.SubmissionID, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	_, err = f.bus.PutState(ctx, sealed.AttachmentCommitKey(s.SubmissionID, aid), []byte("upload"))
	must(t, err)
	submitted := make(chan reply, 1)
	go func() {
		body, _ := json.Marshal(s.submitBody())
		req, _ := http.NewRequest(http.MethodPut, f.srv.URL+"/v1/submissions/"+s.SubmissionID, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+sender)
		req.Header.Set("Content-Type", "application/json")
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			submitted <- reply{}
			return
		}
		resp.Body.Close()
		submitted <- reply{status: resp.StatusCode}
	}()
	select {
	case r := <-submitted:
		t.Fatalf("the submit was answered %d while an upload held its commit entry", r.status)
	case <-time.After(500 * time.Millisecond):
	}
	must(t, f.bus.DeleteState(ctx, sealed.AttachmentCommitKey(s.SubmissionID, aid)))
	if r := <-submitted; r.status != http.StatusAccepted {
		t.Errorf("the submit was answered %d once the upload gave its entry back, want 202", r.status)
	}

	// One left by a gateway that stopped, never renewed, lapses: the
	// submit goes on after some seconds.
	s, aid = f.withAttachment(t, d, sender, []byte("Anlage"))
	f.upload(t, sender, s.SubmissionID, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	_, err = f.bus.PutState(ctx, sealed.AttachmentCommitKey(s.SubmissionID, aid), []byte("upload"))
	must(t, err)
	began := time.Now()
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	t.Logf("a commit entry left behind held the submit for %s", time.Since(began).Round(time.Second))

	// A submit under way refuses an upload.
	s, aid = f.withAttachment(t, d, sender, []byte("Anlage"))
	_, err = f.bus.PutState(ctx, sealed.SubmitLockKey(s.SubmissionID), []byte("submit"))
	must(t, err)
	p := f.upload(t, sender, s.SubmissionID, aid, s.attachments[aid]).problem(t, http.StatusUnprocessableEntity, problem.TypeSubmissionState, "submissionId")
	if !strings.Contains(p.Detail, "being submitted") {
		t.Errorf("detail %q, want the submit under way named", p.Detail)
	}
	must(t, f.bus.DeleteState(ctx, sealed.SubmitLockKey(s.SubmissionID)))
	f.upload(t, sender, s.SubmissionID, aid, s.attachments[aid]).want(t, http.StatusNoContent)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
}
