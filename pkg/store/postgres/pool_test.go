package postgres_test

import (
	"testing"

	"github.com/amtsbote/amtsbote/pkg/store/postgres"
)

func TestPoolSize(t *testing.T) {
	def := postgres.DefaultMaxConns()
	if def < 8 {
		t.Fatalf("DefaultMaxConns() = %d, want at least 8", def)
	}
	for _, tc := range []struct {
		conn string
		want int32
	}{
		{"postgres://u@db.example/amtsbote", def},
		{"postgresql://u@db.example/amtsbote?sslmode=disable&search_path=ab", def},
		{"postgres://u@db.example/amtsbote?pool_max_conns=3", 3},
		{"postgres://u@db.example/amtsbote?pool_min_conns=50", 50},
		{"host=db.example user=u dbname=amtsbote", def},
		{"host=db.example user=u pool_max_conns=5", 5},
		{"host=db.example user=u pool_max_conns = 6", 6},
		{"host=db.example application_name=my_pool_max_conns=7", def},
	} {
		got, err := postgres.MaxConns(tc.conn)
		if err != nil {
			t.Errorf("%s: %v", tc.conn, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: pool of %d, want %d", tc.conn, got, tc.want)
		}
	}
	if _, err := postgres.MaxConns("postgres://u@db.example/amtsbote?pool_max_conns=many"); err == nil {
		t.Error("pool_max_conns=many: no error")
	}
}
