package problem_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// FuzzUnmarshal checks that any problem a peer sends decodes without
// panicking and survives a round trip unchanged.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"type":"https://schema.fitko.de/fit-connect/submission-api/problems/submission-not-found","title":"Submission not found","status":404}`))
	f.Add([]byte(`{"type":"x","title":"t","status":400,"detail":"d","field":"a.b","error":"invalid_request","n":[1,{"x":null}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p problem.Problem
		if err := json.Unmarshal(data, &p); err != nil {
			return
		}
		b, err := json.Marshal(&p)
		if err != nil {
			t.Fatalf("marshal decoded problem: %v", err)
		}
		var q problem.Problem
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatalf("decode own output %s: %v", b, err)
		}
		for k := range p.Extra {
			// Reserved names cannot reach Extra through Unmarshal.
			if k == "type" || k == "title" || k == "status" || k == "detail" || k == "instance" || k == "field" {
				t.Fatalf("reserved member %s in Extra", k)
			}
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed %+v into %+v", p, q)
		}
	})
}
