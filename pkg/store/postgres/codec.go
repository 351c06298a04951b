package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// utc turns a scanned time into UTC; pgx scans timestamptz in local time.
func utc(t *time.Time) { *t = t.UTC() }

// utcPtr is utc for optional times.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// encJSON marshals v as JSON text for a jsonb parameter.
func encJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode json: %w", err)
	}
	return string(b), nil
}

// rawJSON passes raw JSON as given; empty is NULL.
func rawJSON(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// decJSON decodes what encJSON stored, with encoding/json's semantics on
// the faster v2 engine.
func decJSON(b []byte, v any) error {
	if err := jsonv1.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode json: %w", err)
	}
	return nil
}
