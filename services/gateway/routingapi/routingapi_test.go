package routingapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestRouteResultJSON proves that the route-result written out of the
// kept routes is what marshalling routeResult gives.
func TestRouteResultJSON(t *testing.T) {
	views := []routeView{
		{DestinationID: "6f6c2d47-7e0c-4b53-9d2b-6a1c3f3f2a10", DestinationSignature: "eyJhbGciOiJQUzUxMiJ9.e30.c2ln", DestinationName: "Bürgeramt \"Mitte\" <&>"},
		{DestinationID: "0d1b2c3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", DestinationSignature: "x.y.z", DestinationShortName: "BA"},
	}
	for _, tc := range []struct{ offset, total, from, to int }{
		{0, 0, 0, 0}, {0, 1, 0, 1}, {1, 1, 1, 1}, {0, 2, 0, 2}, {1, 2, 1, 2}, {7, 2, 2, 2},
	} {
		var raw [][]byte
		for _, v := range views[tc.from:tc.to] {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, b)
		}
		want, err := json.Marshal(routeResult{Count: tc.to - tc.from, Offset: tc.offset, TotalCount: tc.total, Routes: append([]routeView{}, views[tc.from:tc.to]...)})
		if err != nil {
			t.Fatal(err)
		}
		if got := routeResultJSON(tc.offset, tc.total, raw); !bytes.Equal(got, want) {
			t.Errorf("%+v:\n got %s\nwant %s", tc, got, want)
		}
	}
}
