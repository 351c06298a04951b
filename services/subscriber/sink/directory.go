package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"
)

// Names in a Directory.
const (
	// ManifestFile describes a delivered submission: its ids, service,
	// data file and attachments (see Manifest).
	ManifestFile = "delivery.json"
	// MetadataFile holds the decrypted metadata as received.
	MetadataFile = "metadata.json"
	// AttachmentDir holds the attachments under the names of Filenames.
	AttachmentDir = "attachments"
	// tempPrefix starts the name of a folder being written.
	tempPrefix = ".tmp-"
	// StaleTemp is the age from which NewDirectory removes a temporary
	// folder another Directory left behind when it stopped half-way.
	StaleTemp = time.Hour
	dirPerm   = 0o750
	filePerm  = 0o640
)

// Manifest is the content of a delivered folder's ManifestFile.
type Manifest struct {
	SubmissionID      string `json:"submissionId"`
	CaseID            string `json:"caseId"`
	DestinationID     string `json:"destinationId"`
	ServiceIdentifier string `json:"serviceIdentifier"`
	// DataFile is "data.json" or "data.xml", "" without data.
	DataFile     string               `json:"dataFile,omitempty"`
	DataMimeType string               `json:"dataMimeType,omitempty"`
	Attachments  []ManifestAttachment `json:"attachments"`
	DeliveredAt  time.Time            `json:"deliveredAt"`
}

// ManifestAttachment describes one stored attachment.
type ManifestAttachment struct {
	ID string `json:"id"`
	// File is the path inside the submission's folder:
	// attachments/<name from Filenames>.
	File     string `json:"file"`
	MimeType string `json:"mimeType"`
	Size     int64  `json:"size"`
}

// Directory is a Sink that drops every submission into its own folder,
// named by its submission id, beneath one directory:
//
//	<dir>/<submission id>/delivery.json     the Manifest
//	<dir>/<submission id>/metadata.json
//	<dir>/<submission id>/data.json         or data.xml, if there is data
//	<dir>/<submission id>/attachments/<name>
//
// A submission is written into a temporary folder ".tmp-<id>-<random>"
// beside the final one, every file and folder synced, and then renamed to
// its final name, so a folder named by a submission id is always complete:
// its existence, with its manifest, means "delivered". A Fachverfahren reading the directory
// must skip names that start with a dot.
//
// Each delivery goes into the folder its path names at the time: one an
// operator removed and made anew, or a share mounted there later, is
// taken without a restart.
type Directory struct {
	path  string
	locks keyLock
	now   func() time.Time

	mu  sync.Mutex
	cur *folder
}

// folder is one opened directory of a Directory.
type folder struct {
	root *os.Root
	info fs.FileInfo
	now  func() time.Time
}

var _ Sink = (*Directory)(nil)

// NewDirectory opens dir as a Directory sink, creating it if needed but
// not its parent (a path mistyped or a share not mounted is an error, not
// a tree of new folders that no Fachverfahren reads), and removes
// temporary folders older than StaleTemp.
func NewDirectory(dir string) (*Directory, error) {
	if dir == "" {
		return nil, permanent(errors.New("open directory sink: no directory"))
	}
	if err := os.Mkdir(dir, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fsError(fmt.Errorf("open directory sink: %w", err))
	}
	s := &Directory{path: dir, now: time.Now}
	cur, err := s.open()
	if err != nil {
		return nil, fmt.Errorf("open directory sink: %w", err)
	}
	if err := cur.sweep(func(name string, info fs.FileInfo) bool {
		return s.now().Sub(info.ModTime()) > StaleTemp
	}); err != nil {
		s.Close()
		return nil, fmt.Errorf("open directory sink: %w", err)
	}
	return s, nil
}

// open returns the folder the path names now, opened anew when it is
// another than the one opened before.
func (s *Directory) open() (*folder, error) {
	info, err := os.Stat(s.path)
	if err == nil && !info.IsDir() {
		err = errors.New("not a folder")
	}
	if err != nil {
		return nil, fsError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && os.SameFile(s.cur.info, info) {
		return s.cur, nil
	}
	root, err := os.OpenRoot(s.path)
	if err != nil {
		return nil, fsError(err)
	}
	if info, err = root.Stat("."); err != nil {
		root.Close()
		return nil, fsError(err)
	}
	if s.cur != nil {
		// Deliveries still writing into the old folder fail and come again.
		s.cur.root.Close()
	}
	s.cur = &folder{root: root, info: info, now: s.now}
	return s.cur, nil
}

// Kind returns "directory".
func (s *Directory) Kind() string { return "directory" }

// Close releases the directory.
func (s *Directory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.root.Close()
}

// Check makes and removes a temporary folder, as a delivery begins.
func (s *Directory) Check(context.Context) error {
	cur, err := s.open()
	if err != nil {
		return fmt.Errorf("directory sink %s: %w", s.path, err)
	}
	name := tempName("check")
	if err := cur.root.Mkdir(name, dirPerm); err != nil {
		return fmt.Errorf("directory sink %s: %w", s.path, err)
	}
	if err := cur.root.Remove(name); err != nil {
		return fmt.Errorf("directory sink %s: %w", s.path, err)
	}
	return nil
}

// Deliver writes d into its folder unless that folder exists.
func (s *Directory) Deliver(ctx context.Context, d Delivery) error {
	d, err := normalize(d)
	if err != nil {
		return fmt.Errorf("deliver to directory: %w", err)
	}
	unlock, err := s.locks.lock(ctx, d.SubmissionID)
	if err != nil {
		return fmt.Errorf("deliver %s to directory: %w", d.SubmissionID, err)
	}
	defer unlock()
	cur, err := s.open()
	if err == nil {
		err = cur.deliver(ctx, d)
	}
	if err != nil {
		return fmt.Errorf("deliver %s to directory %s: %w", d.SubmissionID, s.path, err)
	}
	return nil
}

func (dir *folder) deliver(ctx context.Context, d Delivery) error {
	done, err := dir.delivered(d.SubmissionID)
	if err != nil || done {
		return err
	}
	tmp := tempName(d.SubmissionID)
	if err := dir.root.Mkdir(tmp, dirPerm); err != nil {
		return fsError(err)
	}
	if err := dir.write(ctx, tmp, d); err != nil {
		_ = dir.root.RemoveAll(tmp)
		// Another process delivered it and swept this folder away.
		if done, derr := dir.delivered(d.SubmissionID); derr == nil && done {
			return nil
		}
		return err
	}
	if err := dir.root.Rename(tmp, d.SubmissionID); err != nil {
		_ = dir.root.RemoveAll(tmp)
		// Another process renamed its copy into place first.
		if done, derr := dir.delivered(d.SubmissionID); derr == nil && done {
			return nil
		}
		return fsError(err)
	}
	if err := dir.syncDir("."); err != nil {
		return err
	}
	// Folders of attempts that failed, or lost the race, are garbage now.
	// The submission is delivered whatever becomes of them: another
	// process may still be writing into its own, and its sweep or the
	// next start's removes what is left.
	_ = dir.sweep(func(name string, _ fs.FileInfo) bool {
		return strings.HasPrefix(name, tempPrefix+d.SubmissionID+"-")
	})
	return nil
}

// delivered reports whether the folder of id exists with its manifest.
// Anything else in its place was put there by someone else: an operator
// moves it away, and until then the submission waits, as for an outage.
func (dir *folder) delivered(id string) (bool, error) {
	info, err := dir.root.Lstat(id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fsError(err)
	case !info.IsDir():
		return false, transient(fmt.Errorf("%s exists and is no folder this sink wrote; move it away", id))
	}
	manifest, err := dir.root.Lstat(path.Join(id, ManifestFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, transient(fmt.Errorf("folder %s exists without its %s, so this sink did not write it; move it away", id, ManifestFile))
	case err != nil:
		return false, fsError(err)
	case !manifest.Mode().IsRegular():
		return false, transient(fmt.Errorf("%s/%s is no file this sink wrote; move folder %s away", id, ManifestFile, id))
	}
	return true, nil
}

// write fills the temporary folder tmp with d and syncs it.
func (dir *folder) write(ctx context.Context, tmp string, d Delivery) error {
	m := Manifest{
		SubmissionID:      d.SubmissionID,
		CaseID:            d.CaseID,
		DestinationID:     d.DestinationID,
		ServiceIdentifier: d.ServiceIdentifier,
		DataMimeType:      d.DataMimeType,
		Attachments:       []ManifestAttachment{},
	}
	if len(d.Attachments) > 0 {
		if err := dir.root.Mkdir(path.Join(tmp, AttachmentDir), dirPerm); err != nil {
			return fsError(err)
		}
		for i, name := range Filenames(d.Attachments) {
			a := d.Attachments[i]
			file := path.Join(AttachmentDir, name)
			n, err := dir.writeAttachment(ctx, path.Join(tmp, file), a)
			if err != nil {
				return err
			}
			m.Attachments = append(m.Attachments, ManifestAttachment{ID: a.ID, File: file, MimeType: a.MimeType, Size: n})
		}
		if err := dir.syncDir(path.Join(tmp, AttachmentDir)); err != nil {
			return err
		}
	}
	if d.Data != nil {
		m.DataFile = "data.json"
		if d.DataMimeType == MimeXML {
			m.DataFile = "data.xml"
		}
		if err := dir.writeFile(path.Join(tmp, m.DataFile), d.Data); err != nil {
			return err
		}
	}
	if err := dir.writeFile(path.Join(tmp, MetadataFile), d.Metadata); err != nil {
		return err
	}
	m.DeliveredAt = dir.now().UTC()
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return permanent(err)
	}
	if err := dir.writeFile(path.Join(tmp, ManifestFile), append(manifest, '\n')); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return transient(err)
	}
	return dir.syncDir(tmp)
}

func (dir *folder) writeAttachment(ctx context.Context, name string, a Attachment) (int64, error) {
	src, err := openSource(ctx, a, 0)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	f, err := dir.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return 0, fsError(err)
	}
	_, err = io.Copy(f, src)
	if ferr := src.failure(); ferr != nil {
		f.Close()
		return 0, ferr
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fsError(err)
	}
	return src.n, nil
}

func (dir *folder) writeFile(name string, content []byte) error {
	f, err := dir.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return fsError(err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return fsError(err)
}

// syncDir makes the entries of a folder durable.
func (dir *folder) syncDir(name string) error {
	f, err := dir.root.Open(name)
	if err != nil {
		return fsError(err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return fsError(err)
}

// sweep removes the temporary folders that match.
func (dir *folder) sweep(match func(name string, info fs.FileInfo) bool) error {
	f, err := dir.root.Open(".")
	if err != nil {
		return fsError(err)
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return fsError(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || !match(e.Name(), info) {
			continue // gone already, or not ours to remove
		}
		if err := dir.root.RemoveAll(e.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fsError(err)
		}
	}
	return nil
}

// tempName names a temporary folder for id, unique to this attempt; the
// sweep at start removes those a crash left.
func tempName(id string) string {
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix) // crypto/rand.Read never fails
	return tempPrefix + id + "-" + hex.EncodeToString(suffix)
}

// fsError marks a file system error transient: a missing permission, a
// full or read-only disk, an I/O error are mended or pass, and the
// submissions wait for that instead of being refused.
func fsError(err error) error {
	if err == nil {
		return nil
	}
	return transient(err)
}
