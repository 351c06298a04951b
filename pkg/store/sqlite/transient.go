package sqlite

// Transient reports false: the SQLite store is a file of this process,
// never unreachable, and waits out a busy database itself.
func (db *DB) Transient(error) bool { return false }
