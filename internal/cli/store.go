package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/amtsbote/amtsbote/internal/roles"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/redact"
	"github.com/amtsbote/amtsbote/pkg/store/postgres"
	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
)

// openStore opens PostgreSQL when databaseURL is a postgres URL, else the
// SQLite file in dataDir.
func openStore(ctx context.Context, databaseURL, dataDir string) (roles.Store, string, error) {
	if isPostgresURL(databaseURL) {
		db, err := postgres.Open(ctx, databaseURL)
		if err != nil {
			return nil, "", err // names the store already
		}
		return db, "postgres", nil
	}
	if databaseURL != "" {
		return nil, "", fmt.Errorf("database url %q: want postgres://… or empty for SQLite", maskURL(databaseURL))
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, "amtsbote.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, "", fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, "sqlite " + path, nil
}

// isPostgresURL reports whether u names a PostgreSQL database.
func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// loadOrCreateKey reads a private JWK from path, or generates one and writes
// it there (0600) when the file does not exist.
func loadOrCreateKey(path string, p jose.Purpose, kid, commonName string) (jose.KeyPair, bool, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		kp, err := jose.ParsePrivate(raw)
		if err != nil {
			return jose.KeyPair{}, false, fmt.Errorf("read key %s: %w", path, err)
		}
		return kp, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return jose.KeyPair{}, false, fmt.Errorf("read key: %w", err)
	}
	kp, err := jose.GenerateKeyPair(p, kid, commonName)
	if err != nil {
		return jose.KeyPair{}, false, fmt.Errorf("generate key: %w", err)
	}
	if err := writePrivateKey(path, kp); err != nil {
		return jose.KeyPair{}, false, err
	}
	return kp, true, nil
}

func writePrivateKey(path string, kp jose.KeyPair) error {
	raw, err := kp.MarshalPrivate()
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key dir: %w", err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	return nil
}

// maskURL hides the passwords of a URL or connection string for printing.
func maskURL(s string) string { return redact.DSN(s, "****") }
