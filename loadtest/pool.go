package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// inMemory is the largest sealed attachment kept in memory; larger ones
// are written to a file and streamed from it.
const inMemory = 8 << 20

// sealedBlob is one pre-encrypted attachment JWE.
type sealedBlob struct {
	mem  []byte
	file string
	size int64
}

func (b sealedBlob) open() (io.ReadCloser, error) {
	if b.file == "" {
		return io.NopCloser(bytes.NewReader(b.mem)), nil
	}
	return os.Open(b.file)
}

// sealed is one pre-encrypted submission: everything a sender sends
// except the ids the backbone hands out. A variant is sent many times;
// the attachment ids in its metadata are announced anew each time, under
// a new submission id.
type sealed struct {
	class      int
	attIDs     []string
	atts       []sealedBlob
	submitBody []byte // {"encryptedMetadata":…,"encryptedData":…}
	tags       set.AuthenticationTags
}

// poolKey names the variants of one destination and service.
type poolKey struct{ destination, service string }

// pool holds the pre-encrypted variants of every payload class for each
// destination and service, so that the senders only send.
type pool struct {
	variants map[poolKey][][]*sealed // [class][variant]
}

// offer is what a sender needs to know of a destination's service.
type offer struct {
	destination string
	service     string // URN
	schemaURI   string
	key         *gojose.JSONWebKey
}

// buildPool encrypts n variants of every class for every offer on all
// CPUs; big attachments go to files in dir.
func buildPool(ctx context.Context, offers []offer, classes []payloadClass, n int, dir string) (*pool, error) {
	p := &pool{variants: map[poolKey][][]*sealed{}}
	type job struct {
		o        offer
		class, v int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for _, o := range offers {
		k := poolKey{o.destination, o.service}
		p.variants[k] = make([][]*sealed, len(classes))
		for c := range classes {
			p.variants[k][c] = make([]*sealed, n)
		}
	}
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s, err := seal(j.o, classes[j.class], j.class, dir)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				p.variants[poolKey{j.o.destination, j.o.service}][j.class][j.v] = s
				mu.Unlock()
			}
		}()
	}
	// Big attachments are sealed one at a time, so that memory holds one.
	bigOnes := map[int]*sealed{}
feed:
	for _, o := range offers {
		for c, cl := range classes {
			for v := range n {
				if ctx.Err() != nil {
					break feed
				}
				if biggest(cl) > inMemory {
					if _, done := bigOnes[c]; !done || v == 0 {
						s, err := seal(o, cl, c, dir)
						if err != nil {
							close(jobs)
							wg.Wait()
							return nil, err
						}
						bigOnes[c] = s
						mu.Lock()
						p.variants[poolKey{o.destination, o.service}][c][v] = s
						mu.Unlock()
						continue
					}
					mu.Lock()
					p.variants[poolKey{o.destination, o.service}][c][v] = bigOnes[c]
					mu.Unlock()
					continue
				}
				jobs <- job{o, c, v}
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(bigOnes) > 0 {
		// Sealing them took gigabytes the load does not need; the RSS
		// the run samples is the load's.
		debug.FreeOSMemory()
	}
	return p, firstErr
}

// writeString writes s into a new file at path without copying it first:
// a sealed 1 GiB attachment is 1.4 GB.
func writeString(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func biggest(c payloadClass) int64 {
	var m int64
	for _, a := range c.Attachments {
		m = max(m, a)
	}
	return m
}

// seal makes one variant of class for o.
func seal(o offer, class payloadClass, idx int, dir string) (*sealed, error) {
	s := &sealed{class: idx}
	infos := make([]client.AttachmentInfo, 0, len(class.Attachments))
	if len(class.Attachments) > 0 {
		s.tags.Attachments = map[string]string{}
	}
	for i, size := range class.Attachments {
		id := uuid.NewString()
		plain, err := randomBytes(size)
		if err != nil {
			return nil, err
		}
		compact, err := jose.Encrypt(plain, o.key, "application/pdf")
		if err != nil {
			return nil, fmt.Errorf("encrypt attachment: %w", err)
		}
		jwe, err := jose.ParseJWE(compact)
		if err != nil {
			return nil, err
		}
		blob := sealedBlob{size: int64(len(compact))}
		if len(compact) > inMemory {
			blob.file = filepath.Join(dir, id+".jwe")
			if err := writeString(blob.file, compact); err != nil {
				return nil, err
			}
		} else {
			blob.mem = []byte(compact)
		}
		s.attIDs = append(s.attIDs, id)
		s.atts = append(s.atts, blob)
		s.tags.Attachments[id] = jwe.AuthTag
		infos = append(infos, client.AttachmentInfo{
			Hash: client.SHA512(plain), Purpose: client.PurposeAttachment,
			Filename: fmt.Sprintf("anlage-%d.pdf", i+1), MimeType: "application/pdf", ID: id,
		})
	}
	var data *client.DataInfo
	var dataJWE string
	if class.Data > 0 {
		plain, err := specialistData(int(class.Data))
		if err != nil {
			return nil, err
		}
		data = &client.DataInfo{Hash: client.SHA512(plain), SubmissionSchema: client.SubmissionSchema{SchemaURI: o.schemaURI, MimeType: "application/json"}}
		if dataJWE, err = jose.Encrypt(plain, o.key, "application/json"); err != nil {
			return nil, fmt.Errorf("encrypt data: %w", err)
		}
		jwe, err := jose.ParseJWE(dataJWE)
		if err != nil {
			return nil, err
		}
		s.tags.Data = jwe.AuthTag
	}
	meta, err := json.Marshal(map[string]any{
		"$schema":           client.MetadataSchemaURI,
		"contentStructure":  client.ContentStructure{Data: data, Attachments: infos},
		"publicServiceType": client.ServiceType{Identifier: o.service, Name: "Lasttest"},
	})
	if err != nil {
		return nil, err
	}
	metaJWE, err := jose.Encrypt(meta, o.key, "application/json")
	if err != nil {
		return nil, fmt.Errorf("encrypt metadata: %w", err)
	}
	jwe, err := jose.ParseJWE(metaJWE)
	if err != nil {
		return nil, err
	}
	s.tags.Metadata = jwe.AuthTag
	if s.submitBody, err = json.Marshal(map[string]string{"encryptedMetadata": metaJWE, "encryptedData": dataJWE}); err != nil {
		return nil, err
	}
	if dataJWE == "" {
		s.submitBody, _ = json.Marshal(map[string]string{"encryptedMetadata": metaJWE})
	}
	return s, nil
}

// randomBytes returns n bytes: a random MiB repeated, as encrypting
// makes any content look alike.
func randomBytes(n int64) ([]byte, error) {
	block := make([]byte, min(n, 1<<20))
	if _, err := rand.Read(block); err != nil {
		return nil, err
	}
	out := make([]byte, n)
	for off := int64(0); off < n; off += int64(len(block)) {
		copy(out[off:], block)
	}
	return out, nil
}

// specialistData returns n bytes of JSON.
func specialistData(n int) ([]byte, error) {
	const frame = `{"antrag":""}`
	raw, err := randomBytes(int64(n))
	if err != nil {
		return nil, err
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	b.Grow(n)
	b.WriteString(`{"antrag":"`)
	for _, c := range raw[:n-len(frame)] {
		b.WriteByte(alphabet[int(c)%len(alphabet)])
	}
	b.WriteString(`"}`)
	return []byte(b.String()), nil
}
