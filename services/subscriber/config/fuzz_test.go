package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/services/subscriber/config"
)

type keyResult struct {
	kp  jose.KeyPair
	err error
}

// FuzzParse feeds arbitrary bytes to Parse, beside real key files: it
// must never panic, and every error must name the file, and a line when
// it names a field, on one line of text.
func FuzzParse(f *testing.F) {
	f.Add([]byte(natsYAML))
	f.Add([]byte(httpYAML))
	dir := setup(f)
	// Checking an RSA-4096 key takes seconds under the fuzzer's
	// instrumentation; each distinct key file is checked once.
	var mu sync.Mutex
	parsed := map[string]keyResult{}
	f.Cleanup(config.SetParsePrivate(func(raw []byte) (jose.KeyPair, error) {
		mu.Lock()
		defer mu.Unlock()
		r, ok := parsed[string(raw)]
		if !ok {
			r.kp, r.err = jose.ParsePrivate(raw)
			parsed[string(raw)] = r
		}
		return r.kp, r.err
	}))
	path := filepath.Join(dir, "subscriber.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(path, data)
		if err == nil {
			if c == nil {
				t.Fatal("no configuration and no error")
			}
			_ = c.String()
			return
		}
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %v is no config.Errors", err)
		}
		for _, e := range errs {
			msg := e.Error()
			switch {
			case e.File != path || !strings.HasPrefix(msg, path+":"):
				t.Fatalf("error %q does not name the file", msg)
			case e.Field != "" && e.Line <= 0:
				t.Fatalf("error %q names a field but no line", msg)
			case e.Line < 0:
				t.Fatalf("error %q has line %d", msg, e.Line)
			case strings.ContainsAny(msg, "\n\r"):
				t.Fatalf("error %q spans lines", msg)
			}
		}
	})
}
