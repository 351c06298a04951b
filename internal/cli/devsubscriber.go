package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/services/subscriber"
)

// demoSubscriber is the NATS user and durable consumer of the demo's
// subscriber.
const demoSubscriber = "demo-subscriber"

// devNATSUsers are the passwords of dev's NATS users, kept in
// <data dir>/nats.json so that a restart keeps them.
type devNATSUsers struct {
	Amtsbote   string `json:"amtsbote"`
	Subscriber string `json:"subscriber"`
}

// loadOrCreateNATSUsers reads <data dir>/nats.json or creates it with
// fresh passwords.
func loadOrCreateNATSUsers(dataDir string) (devNATSUsers, error) {
	file := filepath.Join(dataDir, "nats.json")
	var u devNATSUsers
	raw, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &u); err != nil || u.Amtsbote == "" || u.Subscriber == "" {
			return u, fmt.Errorf("read %s: not the NATS users dev wrote; remove it to make new ones", file)
		}
		return u, nil
	case !errors.Is(err, fs.ErrNotExist):
		return u, fmt.Errorf("read %s: %w", file, err)
	}
	u = devNATSUsers{Amtsbote: randomHex(16), Subscriber: randomHex(16)}
	if raw, err = json.MarshalIndent(u, "", "  "); err != nil {
		return u, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return u, err
	}
	if err := os.WriteFile(file, append(raw, '\n'), 0o600); err != nil {
		return u, fmt.Errorf("write %s: %w", file, err)
	}
	return u, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// devUsers are dev's NATS users: Amtsbote's own roles with full access,
// and the demo subscriber that may only consume its durable, as
// deploy/nats/amtsbote.conf configures production.
func (u devNATSUsers) users() []bus.User {
	return []bus.User{
		{Name: "amtsbote", Password: u.Amtsbote},
		{Name: demoSubscriber, Password: u.Subscriber, Permissions: bus.SubscriberPermissions(demoSubscriber)},
	}
}

// withUser returns the NATS URL u with a user and password in it.
func withUser(raw, user, password string) (string, error) {
	p, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	p.User = url.UserPassword(user, password)
	return p.String(), nil
}

// withoutUser returns a NATS URL fit to print.
func withoutUser(raw string) string {
	p, err := url.Parse(raw)
	if err != nil || p.User == nil {
		return raw
	}
	p.User = nil
	return p.String()
}

// ensureDemoConsumer creates the demo subscriber's durable on INBOX with
// one filter per demo destination: an operator's step, since the
// subscriber's user may not create consumers.
func ensureDemoConsumer(ctx context.Context, b *bus.Bus, d *demoFile) error {
	var filters []string
	for _, dest := range d.Destinations {
		f, err := bus.InboxDestinationFilter(dest.DestinationID)
		if err != nil {
			return err
		}
		filters = append(filters, f)
	}
	return b.EnsureConsumer(ctx, bus.ConsumerConfig{
		Stream: bus.StreamInbox, Durable: demoSubscriber, FilterSubjects: filters,
		AckWait: subscriber.DefaultAckWait, MaxDeliver: subscriber.DefaultMaxDeliver,
	})
}

// writeSubscriberConfig writes <data dir>/subscriber.yaml: the demo
// destinations' subscriber over NATS with the demo's credentials,
// delivering into the directory <data dir>/sink. Paths in it are relative
// to the data dir, where it lives.
func writeSubscriberConfig(dataDir string, d *demoFile, natsURL string, u devNATSUsers) error {
	var receiver *demoClient
	for i := range d.Clients {
		if d.Clients[i].Role == "receiver" {
			receiver = &d.Clients[i]
		}
	}
	if receiver == nil {
		return errors.New("write subscriber.yaml: the demo has no receiver client")
	}
	var b strings.Builder
	b.WriteString("# Written by `amtsbote dev` at every start: the demo destinations' subscriber.\n")
	b.WriteString("# Run it with: go run . subscriber --config " + filepath.Join(dataDir, "subscriber.yaml") + "\n")
	b.WriteString("mode: nats\nnats:\n")
	fmt.Fprintf(&b, "  url: %s\n  user: %s\n  password: %s\n  durable: %s\n", withoutUser(natsURL), demoSubscriber, u.Subscriber, demoSubscriber)
	b.WriteString("http:\n")
	fmt.Fprintf(&b, "  baseUrl: %s\n  tokenUrl: %s\n  clientId: %s\n  clientSecret: %s\n", d.BaseURL, d.TokenURL, receiver.ClientID, receiver.ClientSecret)
	b.WriteString("concurrency: 4\ndestinations:\n")
	for _, dest := range d.Destinations {
		fmt.Fprintf(&b, "  - id: %s  # %s\n", dest.DestinationID, dest.Name)
		fmt.Fprintf(&b, "    encryptionKeys: [%s]\n", relTo(dataDir, dest.EncryptionKeyFile))
		fmt.Fprintf(&b, "    signingKey: %s\n", relTo(dataDir, dest.SigningKeyFile))
	}
	b.WriteString("sink:\n  kind: directory\n  directory: sink\n")
	if err := os.WriteFile(filepath.Join(dataDir, "subscriber.yaml"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write subscriber.yaml: %w", err)
	}
	return nil
}

// relTo returns path relative to dir when it lies within it.
func relTo(dir, path string) string {
	if rel, err := filepath.Rel(dir, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}
