package subscriber

import "time"

// SetListFor bounds a pickup list page in the tests.
func SetListFor(d time.Duration) (restore func()) {
	old := listFor
	listFor = d
	return func() { listFor = old }
}
