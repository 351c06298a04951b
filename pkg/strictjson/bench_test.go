package strictjson

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// submit is the shape of a SubmitSubmission body: two compact JWEs.
type submit struct {
	EncryptedMetadata *string `json:"encryptedMetadata"`
	EncryptedData     *string `json:"encryptedData"`
}

// jwe returns a compact JWE of about n bytes.
func jwe(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var b strings.Builder
	b.Grow(n)
	b.WriteString("eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0.")
	for i := 0; b.Len() < n; i++ {
		if i%4096 == 4095 {
			b.WriteByte('.')
			continue
		}
		b.WriteByte(alphabet[(i*7+i/64)%len(alphabet)])
	}
	return b.String()
}

func submitBody(size int) []byte {
	return fmt.Appendf(nil, `{"encryptedMetadata":%q,"encryptedData":%q}`, jwe(size/4), jwe(size*3/4-64))
}

func BenchmarkDecode(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"2KiB", 2 << 10}, {"10MiB", 10 << 20}} {
		data := submitBody(size.n)
		b.Run(size.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var v submit
				if err := json.Unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(size.name+"/check-only", func(b *testing.B) {
			ti := infoFor(reflect.TypeFor[*submit]())
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				s := newScanner(data, Options{DisallowUnknown: true})
				if err := s.document(ti); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(size.name+"/strictjson", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var v submit
				if err := Decode(data, &v, Options{DisallowUnknown: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeBody measures a body of many small members, where the
// per-member work of the check shows rather than string scanning.
func BenchmarkDecodeBody(b *testing.B) {
	data := []byte(`{"kind":"k","destinationId":"2ad8d6a5-9bd3-4c1c-b8c4-4f0ee2cf3d7b","announcedAttachments":["a1","a2","a3"],
		"serviceType":{"name":"Bauantrag","identifier":"urn:de:fim:leika:leistung:99010003001006"},
		"list":[{"name":"x","n":1},{"name":"y","n":2},{"name":"z","n":3}],
		"labels":{"a":"1","b":"2","c":"3"},"any":{"n":1.5,"l":[1,2,3]},"ratio":0.5,"count":3,"ok":true}`)
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var v body
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check-only", func(b *testing.B) {
		ti := infoFor(reflect.TypeFor[*body]())
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			s := newScanner(data, Options{DisallowUnknown: true})
			if err := s.document(ti); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strictjson", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var v body
			if err := Decode(data, &v, Options{DisallowUnknown: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
