package sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/services/subscriber/sink"
	"github.com/amtsbote/amtsbote/services/subscriber/sink/sinktest"
)

func TestDirectoryConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Backend {
		dir := filepath.Join(t.TempDir(), "sink")
		return sinktest.Backend{
			Open: func(t *testing.T) sink.Sink {
				s, err := sink.NewDirectory(dir)
				if err != nil {
					t.Fatalf("open directory sink: %v", err)
				}
				return s
			},
			Delivered: func(t *testing.T) []sinktest.Delivered {
				t.Helper()
				checkContained(t, dir)
				return readDirectory(t, dir)
			},
		}
	})
}

// readDirectory reads every delivered folder under dir, skipping the
// temporary ones as a Fachverfahren would.
func readDirectory(t *testing.T, dir string) []sinktest.Delivered {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read sink directory: %v", err)
	}
	var out []sinktest.Delivered
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		folder := filepath.Join(dir, e.Name())
		var m sink.Manifest
		raw, err := os.ReadFile(filepath.Join(folder, sink.ManifestFile))
		if err != nil {
			t.Fatalf("folder %s: %v", e.Name(), err)
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("folder %s: manifest: %v", e.Name(), err)
		}
		if m.SubmissionID != e.Name() {
			t.Fatalf("folder %s holds submission %s", e.Name(), m.SubmissionID)
		}
		d := sinktest.Delivered{
			SubmissionID: m.SubmissionID, CaseID: m.CaseID, DestinationID: m.DestinationID,
			ServiceIdentifier: m.ServiceIdentifier, DataMimeType: m.DataMimeType,
		}
		if d.Metadata, err = os.ReadFile(filepath.Join(folder, sink.MetadataFile)); err != nil {
			t.Fatalf("folder %s: %v", e.Name(), err)
		}
		if m.DataFile != "" {
			if d.Data, err = os.ReadFile(filepath.Join(folder, m.DataFile)); err != nil {
				t.Fatalf("folder %s: %v", e.Name(), err)
			}
		}
		files := 0
		for _, a := range m.Attachments {
			content, err := os.ReadFile(filepath.Join(folder, filepath.FromSlash(a.File)))
			if err != nil {
				t.Fatalf("folder %s: %v", e.Name(), err)
			}
			if int64(len(content)) != a.Size {
				t.Fatalf("folder %s: %s has %d bytes, the manifest says %d", e.Name(), a.File, len(content), a.Size)
			}
			d.Attachments = append(d.Attachments, sinktest.Attachment{
				ID: a.ID, Filename: strings.TrimPrefix(a.File, sink.AttachmentDir+"/"), MimeType: a.MimeType, Content: content,
			})
			files++
		}
		if stored, _ := os.ReadDir(filepath.Join(folder, sink.AttachmentDir)); len(stored) != files {
			t.Fatalf("folder %s holds %d attachment files, the manifest names %d", e.Name(), len(stored), files)
		}
		out = append(out, d)
	}
	return out
}

// checkContained fails the test if anything beside dir, in its parent,
// was created: hostile names must not escape.
func checkContained(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(dir) {
			t.Fatalf("%s appeared beside the sink directory", e.Name())
		}
	}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 || (!e.IsDir() && !e.Type().IsRegular()) {
			t.Errorf("%s is no plain file or folder", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDirectoryTemporaryFolders shows that the folder of a delivery that
// stopped half-way is never taken for a delivered one, is removed when the
// submission is delivered, and that stale ones are removed at start.
func TestDirectoryTemporaryFolders(t *testing.T) {
	dir := t.TempDir()
	d := sinktest.NewDelivery()
	leftover := filepath.Join(dir, ".tmp-"+d.SubmissionID+"-0011223344556677")
	other := filepath.Join(dir, ".tmp-"+uuid.NewString()+"-0011223344556677")
	stale := filepath.Join(dir, ".tmp-"+uuid.NewString()+"-8899aabbccddeeff")
	for _, p := range []string{leftover, other, stale} {
		if err := os.MkdirAll(filepath.Join(p, sink.AttachmentDir), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, sink.MetadataFile), []byte(`{"partial":`), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * sink.StaleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	s, err := sink.NewDirectory(dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temporary folder survived the start: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a recent temporary folder of another submission was removed at start: %v", err)
	}
	if got := readDirectory(t, dir); len(got) != 0 {
		t.Fatalf("temporary folders counted as %d deliveries", len(got))
	}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the leftover of the same submission survived its delivery: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("the temporary folder of another submission was removed: %v", err)
	}
	sinktest.Check(t, readDirectory(t, dir), d, nil)
}

// TestDirectoryStreams shows that an attachment reaches the disk while its
// source is still being read: a source that waits half-way finds its
// first half in the temporary folder.
func TestDirectoryStreams(t *testing.T) {
	dir := t.TempDir()
	s, err := sink.NewDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const half = 4 << 20
	content := sinktest.Random(7, 2*half)
	var once sync.Once
	c := &sinktest.Content{Bytes: content, OnRead: func(n int) {
		if n < half {
			return
		}
		once.Do(func() {
			eventually(t, 10*time.Second, func() error {
				matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*", sink.AttachmentDir, "gross.bin"))
				if len(matches) != 1 {
					return errors.New("no temporary attachment file")
				}
				info, err := os.Stat(matches[0])
				if err != nil {
					return err
				}
				if info.Size() < half {
					return errors.New("first half not on disk yet")
				}
				return nil
			})
		})
	}}
	d := sinktest.NewDelivery()
	d.Attachments = []sink.Attachment{c.Attachment(uuid.NewString(), "gross.bin", "application/octet-stream")}
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	sinktest.Check(t, readDirectory(t, dir), d, map[string][]byte{d.Attachments[0].ID: content})
}

// TestDirectoryNotItsFolder: a file, or a folder without a manifest, of a
// submission's name was put there by someone else. It is no delivery: the
// submission waits, as for an outage, until an operator moves it away.
func TestDirectoryNotItsFolder(t *testing.T) {
	for name, place := range map[string]func(string) error{
		"a file":                    func(p string) error { return os.WriteFile(p, nil, 0o640) },
		"an empty folder":           func(p string) error { return os.Mkdir(p, 0o750) },
		"a folder with a directory": func(p string) error { return os.MkdirAll(filepath.Join(p, sink.ManifestFile), 0o750) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := sink.NewDirectory(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			d := sinktest.NewDelivery()
			p := filepath.Join(dir, d.SubmissionID)
			if err := place(p); err != nil {
				t.Fatal(err)
			}
			err = s.Deliver(context.Background(), d)
			if !errors.Is(err, sink.ErrTransient) || errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), "move") {
				t.Fatalf("deliver onto %s: %v, want a transient error asking to move it away", name, err)
			}
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if err := s.Deliver(context.Background(), d); err != nil {
				t.Fatalf("deliver once it is moved away: %v", err)
			}
			if _, err := os.Stat(filepath.Join(p, sink.ManifestFile)); err != nil {
				t.Errorf("no manifest after the delivery: %v", err)
			}
		})
	}
}

// TestDirectoryFolderUnusable shows that a folder an operator has to mend
// (its permissions, a full or read-only disk) makes submissions wait
// instead of refusing them for good.
func TestDirectoryFolderUnusable(t *testing.T) {
	for _, cause := range []error{fs.ErrPermission, syscall.EROFS, syscall.ENOSPC, syscall.EDQUOT} {
		err := sink.FSError(&fs.PathError{Op: "mkdir", Path: "/srv/eingang/.tmp-1", Err: cause})
		if !errors.Is(err, sink.ErrTransient) || errors.Is(err, sink.ErrPermanent) || !errors.Is(err, cause) {
			t.Errorf("%v: %v, want a transient error", cause, err)
		}
	}
}

// TestDirectoryCheck shows the readiness of a directory sink: it takes
// deliveries while its folder can be written, and leaves nothing behind.
func TestDirectoryCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "eingang")
	s, err := sink.NewDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("check: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("check left %d entries", len(entries))
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err == nil {
		t.Fatal("check passed without the folder")
	}
}

// TestDirectoryFolderMadeAnew shows that a folder an operator removed, or
// moved aside, and made anew is written to without a restart.
func TestDirectoryFolderMadeAnew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "eingang")
	s, err := sink.NewDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := sinktest.NewDelivery()
	if err := s.Deliver(context.Background(), first); err != nil {
		t.Fatalf("deliver: %v", err)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	gone := sinktest.NewDelivery()
	if err := s.Deliver(context.Background(), gone); !errors.Is(err, sink.ErrTransient) {
		t.Fatalf("deliver without the folder: %v, want a transient error", err)
	}
	if err := s.Check(context.Background()); err == nil {
		t.Fatal("check passed without the folder")
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("check with the folder made anew: %v", err)
	}
	if err := s.Deliver(context.Background(), gone); err != nil {
		t.Fatalf("deliver into the folder made anew: %v", err)
	}
	sinktest.Check(t, readDirectory(t, dir), gone, nil)

	if err := os.Rename(dir, dir+".alt"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	moved := sinktest.NewDelivery()
	if err := s.Deliver(context.Background(), moved); err != nil {
		t.Fatalf("deliver after the folder was moved aside: %v", err)
	}
	sinktest.Check(t, readDirectory(t, dir), moved, nil)
	if got := readDirectory(t, dir+".alt"); len(got) != 1 || got[0].SubmissionID != gone.SubmissionID {
		t.Errorf("the folder moved aside holds %d deliveries, want only the one before", len(got))
	}
}

func TestNewDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nicht", "da")
	for _, dir := range []string{"", file, filepath.Join(file, "sub"), missing} {
		if s, err := sink.NewDirectory(dir); err == nil {
			s.Close()
			t.Errorf("NewDirectory(%q) opened", dir)
		}
	}
	if _, err := os.Stat(filepath.Dir(missing)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing parent folder was made: %v", err)
	}
}

// eventually polls f until it returns nil and fails the test with its last
// error after timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
