package bus_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/bus"
)

// oldestServerEnv names a nats-server binary of the oldest version
// Amtsbote supports, 2.10 (.ci/run builds one).
const oldestServerEnv = "AMTSBOTE_TEST_NATS_SERVER_2_10"

// TestOldestServer runs what the roles need of JetStream on nats-server
// 2.10: the topology, an object of several chunks (direct gets answer one
// message there, no batches), a case's events and a durable with several
// filter subjects.
func TestOldestServer(t *testing.T) {
	bin := os.Getenv(oldestServerEnv)
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set", oldestServerEnv)
		}
		t.Skipf("%s is not set: no nats-server 2.10 to test against "+
			"(GOBIN=/tmp go install github.com/nats-io/nats-server/v2@v2.10.29)", oldestServerEnv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server's output:\n%s", out.String())
		}
	})
	ctx := testContext(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var b *bus.Bus
	eventually(t, 20*time.Second, func() error {
		b, err = bus.Connect(ctx, url)
		return err
	})
	t.Cleanup(func() { b.Close() })
	if v := b.Conn().ConnectedServerVersion(); !strings.HasPrefix(v, "2.10.") {
		t.Fatalf("%s is nats-server %s, want 2.10", bin, v)
	}
	if err := b.Ensure(ctx, bus.TopologyConfig{}); err != nil {
		t.Fatalf("topology: %v", err)
	}

	const size = 5*bus.ObjectChunk + 3
	want := sha256.New()
	_, _ = io.Copy(want, &generator{size: size})
	if _, err := b.PutObject(ctx, "old/large", &generator{size: size}); err != nil {
		t.Fatal(err)
	}
	r, err := b.GetObject(ctx, "old/large")
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, r)
	r.Close()
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read %d bytes, %v; want the %d bytes put", n, err, size)
	}

	cases := []string{uuid.NewString(), uuid.NewString()}
	events := publishCaseEvents(t, b, cases, 3)
	for _, c := range cases {
		checkCaseEvents(t, b, c, events[c])
	}

	other, err := bus.InboxSubject("091620000000", uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, inboxSubject(t), "m1")
	publish(t, b, other, "m2")
	var handled atomic.Int32
	startConsume(t, b, bus.ConsumerConfig{
		Stream: bus.StreamInbox, Durable: "two-filters", FilterSubjects: []string{inboxSubject(t), other},
	}, func(context.Context, *bus.Message) error {
		handled.Add(1)
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		if n := handled.Load(); n != 2 {
			return fmt.Errorf("%d of 2 messages handled", n)
		}
		return nil
	})
}

// TestConnectRefusesOlderServer: a server before 2.10 (Debian 12 ships
// 2.9) is refused at connect, naming the version needed, rather than
// failing later at the first durable with several filters.
func TestConnectRefusesOlderServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go speak29(c)
		}
	}()
	_, err = bus.Connect(testContext(t), "nats://"+ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "nats-server 2.9.10") || !strings.Contains(err.Error(), "2.10 or later") {
		t.Fatalf("Connect to nats-server 2.9.10: %v, want a refusal naming both versions", err)
	}
}

// speak29 answers the client protocol's handshake as nats-server 2.9.10.
func speak29(c net.Conn) {
	defer c.Close()
	_, _ = io.WriteString(c, `INFO {"server_id":"OLD","server_name":"old","version":"2.9.10","proto":1,"go":"go1.19","host":"127.0.0.1","port":4222,"headers":true,"max_payload":1048576,"jetstream":true}`+"\r\n")
	rd := bufio.NewReader(c)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "PING") {
			_, _ = io.WriteString(c, "PONG\r\n")
		}
	}
}
