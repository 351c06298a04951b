package token

import (
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/amtsbote/amtsbote/pkg/registry"
)

// A failure for an unknown client costs what one for a known client does
// only while the dummy hash has the cost of the secrets' hashes.
func TestDummyHashHasTheSecretsCost(t *testing.T) {
	cost, err := bcrypt.Cost(dummyHash)
	if err != nil {
		t.Fatalf("dummy hash: %v", err)
	}
	if cost != registry.SecretCost {
		t.Fatalf("dummy hash cost %d, client secrets are hashed at %d", cost, registry.SecretCost)
	}
}
