package gateway_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// TestAttachmentBadInput proves each refusal of an upload: the right
// status, a problem naming the field, nothing stored, and an earlier
// upload of the same attachment left as it was.
func TestAttachmentBadInput(t *testing.T) {
	for _, b := range flowtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			const limit = 64 << 10
			f := newFlowEnv(t, b.Open(t), func(c *gateway.Config) { c.MaxAttachment = limit })
			ctx := context.Background()
			d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			sender := f.token("send:region:DE08")
			stranger := f.token("send:region:DE08")

			// Two announced attachments, the second uploaded already.
			s := sealedSubmission{dest: d, attachments: map[string]string{}}
			s.order = []string{newUUID(t), newUUID(t)}
			s.created = f.create(t, sender, createBody(d, s.order...))
			uploaded := seal(t, []byte("Bauzeichnung"), d.EncryptionKID)
			f.upload(t, sender, s.SubmissionID, s.order[1], uploaded).want(t, http.StatusNoContent)

			// A destination whose first encryption key is retired.
			rolled := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
			newKID := "enc2-" + rolled.ID[:8]
			jwk, _ := json.Marshal(publicJWK(t, keyPair(t, encKey2), newKID))
			_, err := f.st.RollKey(ctx, "test", store.Key{DestinationID: rolled.ID, KID: newKID, Use: store.UseEncryption, JWK: jwk}, f.clock.Now().Add(-time.Minute))
			must(t, err)
			stale := sealedSubmission{dest: rolled}
			stale.order = []string{newUUID(t)}
			stale.created = f.create(t, sender, createBody(rolled, stale.order...))

			before := f.snapshot(t, s, stale)
			good := seal(t, []byte("Lageplan"), d.EncryptionKID)
			parts := strings.Split(good, ".")
			header := func(alg, enc, kid string) string {
				return withHeader(good, map[string]any{"alg": alg, "enc": enc, "kid": kid})
			}
			badB64 := strings.Join([]string{parts[0], parts[1], parts[2], "*" + parts[3][1:], parts[4]}, ".")
			hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"` + d.EncryptionKID + `"}`))
			huge := hdr + "." + strings.Repeat("A", limit)
			shortKey := strings.Join([]string{parts[0], base64.RawURLEncoding.EncodeToString(make([]byte, 100)), parts[2], parts[3], parts[4]}, ".")
			tests := []struct {
				name       string
				sid, aid   string
				token      string
				ct         string
				body       string
				chunked    bool
				status     int
				typ, field string
			}{
				{"not announced", s.SubmissionID, newUUID(t), sender, "", good, false, 422, problem.TypeAttachmentNotAnnounced, "attachmentId"},
				{"wrong content type", s.SubmissionID, s.order[0], sender, "application/octet-stream", good, false, 415, problem.TypeUnsupportedMediaType, "Content-Type"},
				{"not compact", s.SubmissionID, s.order[0], sender, "", strings.Join(parts[:4], "."), false, 400, problem.TypeInvalidJWE, "segments"},
				{"JSON serialization", s.SubmissionID, s.order[0], sender, "", `{"protected":"` + parts[0] + `"}`, false, 400, problem.TypeInvalidJWE, "segment 0"},
				{"bad base64url", s.SubmissionID, s.order[0], sender, "", badB64, false, 400, problem.TypeInvalidJWE, "segment 3"},
				{"padded base64url", s.SubmissionID, s.order[0], sender, "", good + "==", false, 400, problem.TypeInvalidJWE, "segment 4"},
				{"wrong alg", s.SubmissionID, s.order[0], sender, "", header("RSA1_5", "A256GCM", d.EncryptionKID), false, 400, problem.TypeInvalidJWE, "header.alg"},
				{"wrong enc", s.SubmissionID, s.order[0], sender, "", header("RSA-OAEP-256", "A128GCM", d.EncryptionKID), false, 400, problem.TypeInvalidJWE, "header.enc"},
				{"unknown kid", s.SubmissionID, s.order[0], sender, "", header("RSA-OAEP-256", "A256GCM", "unknown-kid-1"), false, 422, problem.TypeUnknownEncryptionKey, "header.kid"},
				{"signing kid", s.SubmissionID, s.order[0], sender, "", header("RSA-OAEP-256", "A256GCM", d.SigningKID), false, 422, problem.TypeUnknownEncryptionKey, "header.kid"},
				{"encrypted key not of the key's size", s.SubmissionID, s.order[0], sender, "", shortKey, false, 400, problem.TypeInvalidJWE, "segment 1"},
				{"retired kid", stale.SubmissionID, stale.order[0], sender, "", seal(t, []byte("alt"), rolled.EncryptionKID), false, 422, problem.TypeUnknownEncryptionKey, "header.kid"},
				{"bad content over an earlier upload", s.SubmissionID, s.order[1], sender, "", header("RSA-OAEP-256", "A128GCM", d.EncryptionKID), false, 400, problem.TypeInvalidJWE, "header.enc"},
				{"over the limit, announced by Content-Length", s.SubmissionID, s.order[0], sender, "", huge, false, 413, problem.TypeBodyTooLarge, ""},
				{"over the limit, streamed", s.SubmissionID, s.order[1], sender, "", huge, true, 413, problem.TypeBodyTooLarge, ""},
				{"another sender", s.SubmissionID, s.order[0], stranger, "", good, false, 404, problem.TypeSubmissionNotFound, "submissionId"},
				{"no token", s.SubmissionID, s.order[0], "", "", good, false, 401, problem.TypeUnauthorized, "Authorization"},
				{"attachment id not a UUID", s.SubmissionID, "anlage-1", sender, "", good, false, 400, problem.TypeInvalidRequest, "attachmentId"},
				{"unknown submission", newUUID(t), s.order[0], sender, "", good, false, 404, problem.TypeSubmissionNotFound, "submissionId"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ct := tt.ct
					if ct == "" {
						ct = "application/jose"
					}
					var body io.Reader = strings.NewReader(tt.body)
					if tt.chunked {
						// Not a *strings.Reader: no Content-Length, so the limit
						// is found while streaming.
						body = io.MultiReader(strings.NewReader(tt.body))
					}
					f.call(t, http.MethodPut, "/v1/submissions/"+tt.sid+"/attachments/"+tt.aid, tt.token, ct, body).
						problem(t, tt.status, tt.typ, tt.field)
					f.wantUnchangedFlow(t, before, s, stale)
				})
			}
			if got := f.object(t, sealed.AttachmentObject(s.SubmissionID, s.order[1])); got != uploaded {
				t.Error("a refused upload changed the earlier one")
			}
			if _, err := f.bus.StatObject(ctx, sealed.AttachmentObject(s.SubmissionID, s.order[0])); !errors.Is(err, bus.ErrNotFound) {
				t.Errorf("refused uploads left an object: %v", err)
			}
			// Uploading the same content again is harmless.
			f.upload(t, sender, s.SubmissionID, s.order[1], uploaded).want(t, http.StatusNoContent)
			sub, err := f.st.Submission(ctx, s.SubmissionID)
			must(t, err)
			if len(sub.UploadedAttachments) != 1 || sub.UploadedAttachments[0] != s.order[1] {
				t.Errorf("uploaded attachments %v", sub.UploadedAttachments)
			}
			// An empty file encrypted has an empty ciphertext, which RFC 7516 allows.
			empty := seal(t, nil, d.EncryptionKID)
			if segs := strings.Split(empty, "."); segs[3] != "" {
				t.Fatalf("ciphertext of an empty file: %q", segs[3])
			}
			f.upload(t, sender, s.SubmissionID, s.order[0], empty).want(t, http.StatusNoContent)
			if got := f.object(t, sealed.AttachmentObject(s.SubmissionID, s.order[0])); got != empty {
				t.Error("the empty file's JWE was not stored as sent")
			}
		})
	}
}

// jweStream generates a structurally valid compact JWE with a ciphertext
// of about size bytes, without holding it, and samples the heap every
// 2 MiB it yields.
type jweStream struct {
	r     io.Reader
	n     int
	probe *heapProbe
}

func newJWEStream(kid string, size int, probe *heapProbe) *jweStream {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"` + kid + `"}`))
	key := base64.RawURLEncoding.EncodeToString(make([]byte, 512))
	iv := base64.RawURLEncoding.EncodeToString(make([]byte, 12))
	tag := base64.RawURLEncoding.EncodeToString(make([]byte, 16))
	cipher := io.LimitReader(base64Stream{}, int64(size/3*4))
	return &jweStream{r: io.MultiReader(strings.NewReader(hdr+"."+key+"."+iv+"."), cipher, strings.NewReader("."+tag)), probe: probe}
}

func (s *jweStream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	before := s.n / (2 << 20)
	s.n += n
	if s.n/(2<<20) != before {
		s.probe.sample()
	}
	return n, err
}

// base64Stream is an endless stream of base64url characters.
type base64Stream struct{}

func (base64Stream) Read(p []byte) (int, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	n := len(p) / 4 * 4
	if n == 0 {
		n = len(p)
	}
	for i := range n {
		p[i] = alphabet[(i*7+i/64)%64]
	}
	return n, nil
}

// sampler discards what it receives and samples the heap every 2 MiB.
type sampler struct {
	n     int
	probe *heapProbe
}

func (s *sampler) Write(p []byte) (int, error) {
	before := s.n / (2 << 20)
	s.n += len(p)
	if s.n/(2<<20) != before {
		s.probe.sample()
	}
	return len(p), nil
}

// heapProbe records the highest live heap seen at its samples; each sample
// collects garbage first, so only memory still referenced counts.
type heapProbe struct {
	mu         sync.Mutex
	base, peak uint64
}

func newHeapProbe() *heapProbe {
	p := &heapProbe{}
	p.base = liveHeap()
	return p
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func (p *heapProbe) sample() {
	h := liveHeap()
	p.mu.Lock()
	p.peak = max(p.peak, h)
	p.mu.Unlock()
}

func (p *heapProbe) growth() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.peak, p.base) - p.base
}

// natsServerEnv, when set to a directory, turns TestHelperNATSServer into a
// JetStream server storing there, for a parent test that measures its own
// heap without the server's buffers.
const natsServerEnv = "AMTSBOTE_GATEWAY_TEST_NATS_DIR"

// TestHelperNATSServer is not a test: run by natsServerProcess in a child
// process, it serves JetStream until the parent closes stdin.
func TestHelperNATSServer(t *testing.T) {
	dir := os.Getenv(natsServerEnv)
	if dir == "" {
		t.Skip("runs only as the NATS server process of TestLargeAttachmentStreams")
	}
	s, err := bus.RunEmbedded(bus.EmbeddedConfig{Dir: dir, Host: "127.0.0.1", Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(s.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	s.Shutdown()
	s.WaitForShutdown()
}

// natsServerProcess starts a JetStream server in a child process and
// returns its URL.
func natsServerProcess(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNATSServer$")
	cmd.Env = append(os.Environ(), natsServerEnv+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	t.Cleanup(func() {
		stdin.Close()
		_, _ = io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil {
			t.Errorf("nats server process: %v", err)
		}
	})
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("nats server process: no URL: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestLargeAttachmentStreams uploads and downloads an attachment far larger
// than the pipeline's buffers. The server runs in another process, so the
// live heap measured here is the gateway's (with the test's client): it
// grows by far less than the attachment, both ways.
func TestLargeAttachmentStreams(t *testing.T) {
	const (
		size      = 32 << 20
		limit     = 4 << 20
		downLimit = 8 << 20
	)
	b := bustest.Connect(t, natsServerProcess(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, b.Ensure(ctx, bus.TopologyConfig{}))
	f := newFlowEnvOn(t, flowtest.OpenSQLite(t), b)
	d := f.createDestination(newUUID(t), store.StatusActive, "DE08311")
	sender := f.token("send:region:DE08")
	receiver := f.token("subscribe:destination:" + d.ID)
	s := sealedSubmission{dest: d, attachments: map[string]string{}}
	aid := newUUID(t)
	s.order = []string{aid}
	s.created = f.create(t, sender, createBody(d, aid))

	up := newHeapProbe()
	f.call(t, http.MethodPut, "/v1/submissions/"+s.SubmissionID+"/attachments/"+aid, sender, "application/jose", newJWEStream(d.EncryptionKID, size, up)).
		want(t, http.StatusNoContent)
	if g := up.growth(); g > limit {
		t.Errorf("live heap grew by %d MiB during a %d MiB upload, want at most %d MiB", g>>20, size>>20, limit>>20)
	}
	t.Logf("live heap growth: upload %d KiB", up.growth()>>10)

	info, err := f.bus.StatObject(ctx, sealed.AttachmentObject(s.SubmissionID, aid))
	must(t, err)
	if info.Size < size || info.Chunks < 2 {
		t.Errorf("object of %d bytes in %d chunks", info.Size, info.Chunks)
	}
	s.metadata = seal(t, []byte("{}"), d.EncryptionKID)
	s.data = seal(t, []byte("{}"), d.EncryptionKID)
	f.submit(t, sender, s).want(t, http.StatusAccepted)
	f.route(t, s.SubmissionID)

	down := newHeapProbe()
	resp := f.do(http.MethodGet, "/v1/submissions/"+s.SubmissionID+"/attachments/"+aid, receiver, "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	n, err := io.Copy(&sampler{probe: down}, resp.Body)
	must(t, err)
	if uint64(n) != info.Size || resp.ContentLength != n {
		t.Errorf("downloaded %d bytes (Content-Length %d), stored %d", n, resp.ContentLength, info.Size)
	}
	if g := down.growth(); g > downLimit {
		t.Errorf("live heap grew by %d MiB during a %d MiB download, want at most %d MiB", g>>20, size>>20, downLimit>>20)
	}
	t.Logf("live heap growth: download %d KiB", down.growth()>>10)
}
