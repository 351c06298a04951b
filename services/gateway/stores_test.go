package gateway_test

import "testing"

// backends are the stores the store-dependent tests run on.
func backends(t *testing.T) []backend {
	t.Helper()
	return []backend{{"sqlite", openSQLite}}
}
