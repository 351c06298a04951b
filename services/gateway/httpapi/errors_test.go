package httpapi_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/amtsbote/amtsbote/services/gateway/httpapi"
)

// TestStoreUnreachableIs503: a failure the store calls transient is
// answered 503 with Retry-After, to be retried; any other one 500.
func TestStoreUnreachableIs503(t *testing.T) {
	down := errors.New("connection refused")
	a := &httpapi.API{Log: slog.New(slog.DiscardHandler), Transient: func(err error) bool { return errors.Is(err, down) }}
	for _, tt := range []struct {
		err   error
		code  int
		retry bool
	}{
		{down, http.StatusServiceUnavailable, true},
		{errors.New("a bug"), http.StatusInternalServerError, false},
	} {
		w := httptest.NewRecorder()
		a.WriteError(w, httptest.NewRequest(http.MethodGet, "/v1/destinations/x", nil), tt.err)
		if w.Code != tt.code || (w.Header().Get("Retry-After") != "") != tt.retry {
			t.Errorf("%v: %d, Retry-After %q; want %d", tt.err, w.Code, w.Header().Get("Retry-After"), tt.code)
		}
	}
}
