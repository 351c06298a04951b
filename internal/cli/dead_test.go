package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
	"github.com/amtsbote/amtsbote/pkg/sealed"
	"github.com/amtsbote/amtsbote/pkg/store"
)

func TestDeadCommands(t *testing.T) {
	node := bustest.Server(t)
	b := bustest.Connect(t, node.URL)
	ctx := context.Background()
	if err := b.Ensure(ctx, bus.TopologyConfig{Duplicates: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	dataDir := storeDir(t)
	dest := uuid.NewString()
	subject, err := bus.InboxSubject("08311", dest)
	if err != nil {
		t.Fatal(err)
	}
	// publish records a submission to the destination and sends it to the
	// destination's inbox, routed.
	publish := func(t *testing.T) string {
		t.Helper()
		id := uuid.NewString()
		sub := sealed.Submission{
			SubmissionID: id, CaseID: uuid.NewString(), DestinationID: dest, Service: "urn:de:fim:leika:leistung:99050012104000",
			ARS: "083110000000", Attachments: []string{}, Object: sealed.PayloadObject(id), SenderClientID: "portal",
		}
		st, _, err := openStore(ctx, "", dataDir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.CreateSubmission(ctx, store.Submission{ID: id, CaseID: sub.CaseID, DestinationID: dest,
			ServiceIdentifier: sub.Service, SenderClientID: sub.SenderClientID, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(sub)
		if err != nil {
			t.Fatal(err)
		}
		ev := event.New()
		ev.SetID(id)
		ev.SetSource("https://amtsbote.test")
		ev.SetType(sealed.TypeRouted)
		if err := ev.SetData("application/json", body); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, subject, ev, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	var ids []string
	for range 3 {
		ids = append(ids, publish(t))
	}
	var (
		mu       sync.Mutex
		fixed    bool
		received = map[string]int{}
	)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(cctx, bus.ConsumerConfig{Stream: bus.StreamInbox, Durable: "sink"}, func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if !fixed {
				return bus.PermanentReason("sink-down", errors.New("connection refused"))
			}
			received[m.Event.ID()]++
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	eventually(t, 10*time.Second, func() error {
		if _, n, err := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0); err != nil || n != 3 {
			return fmt.Errorf("%d dead letters (%v)", n, err)
		}
		return nil
	})
	list, _, err := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	nats := []string{"--nats-url", node.URL}
	withStore := append([]string{"--data-dir", dataDir}, nats...)

	t.Run("list", func(t *testing.T) {
		out, err := runCLI(t, dataDir, append([]string{"dead", "list", "--reason", "sink-down", "--destination", dest, "--limit", "2"}, nats...)...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[1]) || strings.Contains(out, ids[2]) || !strings.Contains(out, "2 of 3") {
			t.Errorf("list:\n%s", out)
		}
		out, err = runCLI(t, dataDir, append([]string{"dead", "list", "--reason", "unroutable"}, nats...)...)
		if err != nil || !strings.Contains(out, "0 of 0") {
			t.Errorf("another reason: %v\n%s", err, out)
		}
	})
	t.Run("show", func(t *testing.T) {
		out, err := runCLI(t, dataDir, append([]string{"dead", "show", fmt.Sprint(list[0].Seq)}, nats...)...)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			MsgID   string        `json:"msgId"`
			Reason  string        `json:"reason"`
			History []bus.Attempt `json:"history"`
			Data    string        `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("show: %v\n%s", err, out)
		}
		data, err := base64.StdEncoding.DecodeString(d.Data)
		if err != nil || d.MsgID != ids[0] || d.Reason != "sink-down" || len(d.History) != 1 || !strings.Contains(string(data), `"submissionId":"`+ids[0]+`"`) {
			t.Errorf("show: %s", out)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{
			{"dead"}, {"dead", "bury"}, {"dead", "show"}, {"dead", "show", "x"}, {"dead", "purge"},
			{"dead", "redrive"}, {"dead", "redrive", "1", "--all"}, {"dead", "list", "--reason", "a.b"},
			{"dead", "list", "--destination", "xyz"}, {"dead", "list", "--limit", "0"}, {"dead", "list", "--limit", "501"},
			{"dead", "list", "--offset", "-1"}, {"dead", "list", "--all"}, {"dead", "purge", "1", "--reason", "sink-down"},
			{"dead", "show", "1", "--limit", "5"},
		} {
			// Each is a command used wrongly: exit 2, not 1.
			var usage *UsageError
			if _, err := runCLI(t, dataDir, append(args, nats...)...); !errors.Is(err, ErrUsage) && !errors.As(err, &usage) {
				t.Errorf("%v: %v, want a usage error", args, err)
			}
		}
		if _, err := runCLI(t, dataDir, append([]string{"dead", "show", "99999"}, nats...)...); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("show of an unknown one: %v", err)
		}
	})

	mu.Lock()
	fixed = true
	mu.Unlock()
	t.Run("redrive", func(t *testing.T) {
		eventually(t, 10*time.Second, func() error {
			_, err := runCLI(t, dataDir, append([]string{"dead", "redrive", fmt.Sprint(list[0].Seq)}, withStore...)...)
			return err
		})
		eventually(t, 10*time.Second, func() error {
			_, err := runCLI(t, dataDir, append([]string{"dead", "redrive", "--all", "--destination", dest, "--reason", "sink-down"}, withStore...)...)
			if err != nil {
				return err
			}
			if _, n, _ := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0); n != 0 {
				return fmt.Errorf("%d dead letters left", n)
			}
			return nil
		})
		eventually(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if received[id] != 1 {
					return fmt.Errorf("%s received %d times", id, received[id])
				}
			}
			return nil
		})
	})

	t.Run("purge", func(t *testing.T) {
		mu.Lock()
		fixed = false
		mu.Unlock()
		subjectID := publish(t)
		var seq uint64
		eventually(t, 10*time.Second, func() error {
			l, _, err := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0)
			if err != nil || len(l) != 1 {
				return fmt.Errorf("%d dead letters (%v)", len(l), err)
			}
			seq = l[0].Seq
			return nil
		})
		out, err := runCLI(t, dataDir, append([]string{"dead", "purge", "--actor", "operator-7", fmt.Sprint(seq)}, withStore...)...)
		if err != nil || !strings.Contains(out, "purged") {
			t.Fatalf("purge: %v\n%s", err, out)
		}
		if _, err := runCLI(t, dataDir, append([]string{"dead", "purge", fmt.Sprint(seq)}, withStore...)...); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("second purge: %v", err)
		}
		st, _, err := openStore(ctx, "", dataDir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		entries, err := st.AuditLog(ctx, fmt.Sprintf("dead-letter:%d", seq), store.Page{})
		if err != nil || len(entries) != 1 || entries[0].Action != bus.AuditDeadPurge || entries[0].Actor != "operator-7" ||
			!strings.Contains(string(entries[0].Before), subjectID) {
			t.Errorf("audit: %+v, %v", entries, err)
		}
		all, err := st.AuditLog(ctx, "", store.Page{})
		if err != nil {
			t.Fatal(err)
		}
		redrives := 0
		for _, e := range all {
			if e.Action == bus.AuditDeadRedrive {
				redrives++
			}
		}
		if redrives != 3 {
			t.Errorf("%d re-drives audited, want 3", redrives)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		mu.Lock()
		fixed = false
		mu.Unlock()
		publish(t)
		publish(t)
		var seqs []string
		eventually(t, 10*time.Second, func() error {
			l, _, err := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0)
			if err != nil || len(l) != 2 {
				return fmt.Errorf("%d dead letters (%v)", len(l), err)
			}
			seqs = []string{fmt.Sprint(l[0].Seq), fmt.Sprint(l[1].Seq)}
			return nil
		})
		// Ctrl-C as the first purge is reported: the second is not begun.
		ictx, interrupt := context.WithCancel(ctx)
		defer interrupt()
		out := &interruptingWriter{on: "purged", interrupt: interrupt}
		getenv := func(string) string { return "" }
		err := Run(ictx, append([]string{"dead", "purge", "--actor", "operator-8", seqs[0], seqs[1]}, withStore...), getenv, out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "interrupted, 1 not purged: ["+seqs[1]+"]") {
			t.Errorf("purge interrupted: %v, want the one not purged named\n%s", err, out)
		}
		l, _, err := b.DeadLetters(ctx, bus.DeadFilter{}, 0, 0)
		if err != nil || len(l) != 1 || fmt.Sprint(l[0].Seq) != seqs[1] {
			t.Errorf("dead letters left: %+v, %v; want %s", l, err, seqs[1])
		}
		st, _, err := openStore(ctx, "", dataDir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for i, want := range []int{1, 0} {
			entries, err := st.AuditLog(ctx, "dead-letter:"+seqs[i], store.Page{})
			if err != nil || len(entries) != want {
				t.Errorf("audit of %s: %d entries (%v), want %d", seqs[i], len(entries), err, want)
			}
		}
		if _, err := runCLI(t, dataDir, append([]string{"dead", "purge", seqs[1]}, withStore...)...); err != nil {
			t.Errorf("purge of the rest: %v", err)
		}
	})
	t.Run("a forged inbox letter", func(t *testing.T) {
		// Whoever may write to DEAD writes its headers and body: one naming
		// a submission Amtsbote did not record for this inbox stays.
		m := natsgo.NewMsg(bus.PrefixDead + ".max-deliver")
		m.Header.Set(bus.HeaderDeadReason, "max-deliver")
		m.Header.Set(bus.HeaderOriginalSubject, subject)
		m.Header.Set(bus.HeaderOriginalStream, bus.StreamInbox)
		id := uuid.NewString()
		m.Data = []byte(`{"submissionId":"` + id + `","caseId":"` + uuid.NewString() + `","destinationId":"` + dest +
			`","service":"urn:de:fim:leika:leistung:99050012104000","ars":"083110000000","attachments":[],"object":"payload.` + id + `"}`)
		ack, err := b.JetStream().PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		_, err = runCLI(t, dataDir, append([]string{"dead", "redrive", fmt.Sprint(ack.Sequence)}, withStore...)...)
		if !errors.Is(err, store.ErrNotRecorded) {
			t.Errorf("redrive: %v, want it refused as not recorded", err)
		}
		if _, err := b.DeadLetter(ctx, ack.Sequence); err != nil {
			t.Errorf("the refused dead letter is gone: %v", err)
		}
		if _, err := runCLI(t, dataDir, append([]string{"dead", "purge", fmt.Sprint(ack.Sequence)}, withStore...)...); err != nil {
			t.Errorf("purge: %v", err)
		}
	})
	t.Run("none matching", func(t *testing.T) {
		out, err := runCLI(t, dataDir, append([]string{"dead", "redrive", "--all", "--reason", "nope"}, withStore...)...)
		if err != nil || !strings.Contains(out, "none re-driven") {
			t.Errorf("redrive --all of none: %v\n%s", err, out)
		}
	})
	t.Run("a data dir without a store", func(t *testing.T) {
		empty := t.TempDir()
		_, err := runCLI(t, empty, append([]string{"dead", "purge", "1", "--data-dir", empty}, nats...)...)
		if err == nil || !strings.Contains(err.Error(), "no store at") {
			t.Errorf("purge: %v, want the missing store named", err)
		}
		if _, err := os.Stat(filepath.Join(empty, "amtsbote.db")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a store was made: %v", err)
		}
	})
	t.Run("a NATS without Amtsbote's streams", func(t *testing.T) {
		bare := bustest.Server(t)
		_, err := runCLI(t, dataDir, "dead", "list", "--nats-url", bare.URL)
		if err == nil || !strings.Contains(err.Error(), "holds no stream DEAD") {
			t.Errorf("list: %v, want the wrong NATS named", err)
		}
	})
	t.Run("another installation's store", func(t *testing.T) {
		if _, err := b.RecordInstallation(ctx, "installation-a"); err != nil {
			t.Fatal(err)
		}
		other := t.TempDir()
		st, _, err := openStore(ctx, "", other)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.RecordInstallation(ctx, "installation-b"); err != nil {
			t.Fatal(err)
		}
		st.Close()
		_, err = runCLI(t, other, append([]string{"dead", "purge", "1", "--data-dir", other}, nats...)...)
		if err == nil || !strings.Contains(err.Error(), "belongs to installation installation-b") {
			t.Errorf("purge: %v, want the installations named", err)
		}
		// A store no process of the bus's installation has used: its
		// audit entries would go where no one of that installation looks.
		unused := t.TempDir()
		st, _, err = openStore(ctx, "", unused)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		_, err = runCLI(t, unused, append([]string{"dead", "redrive", "--all", "--data-dir", unused}, nats...)...)
		if err == nil || !strings.Contains(err.Error(), "NATS servers belong to installation installation-a and the store to none") {
			t.Errorf("redrive with a store without an installation: %v, want it refused", err)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if received[id] != 1 {
			t.Errorf("%s received %d times, want once", id, received[id])
		}
	}
}

// interruptingWriter interrupts as the first line containing on is written.
type interruptingWriter struct {
	on        string
	interrupt context.CancelFunc
	buf       bytes.Buffer
}

func (w *interruptingWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.on) {
		w.interrupt()
	}
	return w.buf.Write(p)
}

func (w *interruptingWriter) String() string { return w.buf.String() }
