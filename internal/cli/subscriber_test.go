package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/client"
)

// TestQuickStartSubscriber runs the README's quick start as written: dev
// in one process, `subscriber --config <data>/subscriber.yaml` in another.
// Every demo submission lands decrypted in <data>/sink and is accepted.
func TestQuickStartSubscriber(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs dev and the subscriber")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	dataDir := filepath.Join(dir, "data")
	dev := startChild(t, bin, dataDir)
	d := dev.demo
	sub := startProcess(t, bin, "destinations:", "subscriber", "--config", filepath.Join(dataDir, "subscriber.yaml"), "--log-level", "warn")
	defer sub.stop(t)

	ctx := context.Background()
	sender := newActor(t, d, "sender", http.DefaultTransport)
	var receipts []client.Receipt
	for i, dest := range d.Destinations {
		r, err := sender.Sender().Submit(ctx, client.Submission{
			DestinationID: dest.DestinationID,
			ServiceType:   client.ServiceType{Identifier: dest.Services[0], Name: "Demo"},
			Data:          []byte(fmt.Sprintf(`{"demo":%d}`, i)),
			Attachments:   []client.Attachment{{Filename: "antrag.pdf", MimeType: "application/pdf", Bytes: []byte("%PDF-1.7 demo")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	for i, r := range receipts {
		eventually(t, time.Minute, func() error {
			st, err := sender.Sender().StatusOf(ctx, r)
			if err != nil {
				return err
			}
			if st.Decision != client.StateAccepted {
				return fmt.Errorf("%s: %q, not accepted", r.SubmissionID, st.Decision)
			}
			return nil
		})
		folder := filepath.Join(dataDir, "sink", r.SubmissionID)
		data, err := os.ReadFile(filepath.Join(folder, "data.json"))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"demo":%d}`, i); string(data) != want {
			t.Errorf("%s: data %s, want %s", r.SubmissionID, data, want)
		}
		if _, err := os.Stat(filepath.Join(folder, "attachments", "antrag.pdf")); err != nil {
			t.Error(err)
		}
	}
	if strings.Contains(sub.errOut.String(), "level=ERROR") {
		t.Errorf("the subscriber logged errors:\n%s", sub.errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "nats.json")); errors.Is(err, os.ErrNotExist) {
		t.Error("dev kept no NATS users")
	}
}
