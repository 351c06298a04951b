// Package sharedtest finds the project's shared reference material (the
// official data files and FIT-Connect specifications) for tests. It lives in
// ../shared beside the module root and is never part of the repository, so
// tests that need it skip when it is absent.
package sharedtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Path returns the path of ../shared/<parts...> beside the module root,
// skipping the test when it does not exist.
func Path(tb testing.TB, parts ...string) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Skip("cannot locate the module root")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	p := filepath.Join(append([]string{root, "..", "shared"}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared reference material absent: %v", err)
	}
	return p
}

// Data returns the path of a file in ../shared/data.
func Data(tb testing.TB, name string) string {
	tb.Helper()
	return Path(tb, "data", name)
}
