package config

import "github.com/amtsbote/amtsbote/pkg/jose"

// SetParsePrivate replaces the parser of key files and returns a function
// restoring it.
func SetParsePrivate(f func([]byte) (jose.KeyPair, error)) (restore func()) {
	old := parsePrivate
	parsePrivate = f
	return func() { parsePrivate = old }
}
