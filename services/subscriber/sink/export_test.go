package sink

import (
	"context"
	"time"
)

// SetSleep replaces the wait between an HTTP sink's attempts.
func SetSleep(s *HTTP, sleep func(ctx context.Context, d time.Duration) error) { s.sleep = sleep }

// ParseRetryAfter exposes parseRetryAfter.
var ParseRetryAfter = parseRetryAfter

// PoolSize is the most connections s opens.
func PoolSize(s *Postgres) int32 { return s.pool.Config().MaxConns }

// FSError exposes fsError.
var FSError = fsError
