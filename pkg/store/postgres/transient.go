package postgres

import (
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err is PostgreSQL being unreachable or
// refusing work for now: no connection, a connection lost, a timeout, or
// an error of SQLSTATE class 08 (connection exception), 53 (insufficient
// resources) or 57 (operator intervention, such as a database not
// accepting connections or shutting down).
func (db *DB) Transient(err error) bool {
	var (
		ce *pgconn.ConnectError
		pe *pgconn.PgError
		ne net.Error
	)
	switch {
	case err == nil:
		return false
	case errors.As(err, &pe) && len(pe.Code) == 5:
		switch pe.Code[:2] {
		case "08", "53", "57":
			return true
		}
		return pe.Code == "55000" // object_not_in_prerequisite_state: a database not accepting connections
	case errors.As(err, &ce), errors.As(err, &ne):
		return true
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}
