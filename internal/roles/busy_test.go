package roles

import (
	"net/http"
	"sync/atomic"
	"testing"
)

// TestCountedKeepsTheRequestsUnderWay proves that the count the signer
// gives way to rises while a request is served over HTTP and falls once it
// is answered.
func TestCountedKeepsTheRequestsUnderWay(t *testing.T) {
	var n atomic.Int64
	inside := make(chan int64, 1)
	addr := serve(t, counted(&n, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside <- n.Load()
	})))
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-inside; got != 1 {
		t.Errorf("while serving: %d requests counted, want 1", got)
	}
	if got := n.Load(); got != 0 {
		t.Errorf("after the answer: %d requests counted, want 0", got)
	}
}
