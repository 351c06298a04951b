package postgres

// Queries for the plan test.
var (
	PickupWhere = pickupWhere
	DueQueries  = dueQueries
)
