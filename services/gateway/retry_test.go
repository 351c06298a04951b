package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
)

// TestCreateRetriesAtOnce: a create sent several times at once with one
// Idempotency-Key, as a portal retrying in parallel does, gets the same
// 201 answer every time.
func TestCreateRetriesAtOnce(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	d := f.createDestination("6c89c356-c354-4459-b2fd-8d1260ea835c", "active", "DE08311")
	sender := f.token("send:region:DE08")
	body, err := json.Marshal(createBody(d))
	must(t, err)
	for round := range 10 {
		key := fmt.Sprintf("antrag-%d", round)
		type answer struct {
			status int
			body   string
		}
		answers := make([]answer, 4)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/submissions", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+sender)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", key)
				resp, err := f.srv.Client().Do(req)
				if err != nil {
					answers[i] = answer{body: err.Error()}
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				answers[i] = answer{resp.StatusCode, string(b)}
			})
		}
		wg.Wait()
		for _, a := range answers {
			if a != answers[0] || a.status != http.StatusCreated {
				t.Fatalf("round %d: answers %v, want the same 201 four times", round, answers)
			}
		}
	}
}
