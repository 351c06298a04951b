package sink

import (
	"context"
	"time"
)

// SetSleep replaces the wait between an HTTP sink's attempts.
func SetSleep(s *HTTP, sleep func(ctx context.Context, d time.Duration) error) { s.sleep = sleep }

// ParseRetryAfter exposes parseRetryAfter.
var ParseRetryAfter = parseRetryAfter
