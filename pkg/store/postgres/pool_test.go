package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

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
		cfg, err := postgres.PoolConfig(tc.conn, def)
		if err != nil {
			t.Errorf("%s: %v", tc.conn, err)
			continue
		}
		if cfg.MaxConns != tc.want {
			t.Errorf("%s: pool of %d, want %d", tc.conn, cfg.MaxConns, tc.want)
		}
	}
	if _, err := postgres.PoolConfig("postgres://u@db.example/amtsbote?pool_max_conns=many", def); err == nil {
		t.Error("pool_max_conns=many: no error")
	}
	// Size zero keeps pgx's default.
	pgx, err := pgxpool.ParseConfig("postgres://u@db.example/amtsbote")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := postgres.PoolConfig("postgres://u@db.example/amtsbote", 0)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != pgx.MaxConns {
		t.Errorf("size 0: pool of %d, want pgx's %d", cfg.MaxConns, pgx.MaxConns)
	}
}
