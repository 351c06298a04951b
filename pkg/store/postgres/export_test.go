package postgres

// Queries for the plan test.
var (
	PickupWhere = pickupWhere
	DueQueries  = dueQueries
)

// MaxConns is the pool size Open gives a connection string.
func MaxConns(conn string) (int32, error) {
	cfg, err := poolConfig(conn)
	if err != nil {
		return 0, err
	}
	return cfg.MaxConns, nil
}
