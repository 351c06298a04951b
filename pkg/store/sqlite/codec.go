package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/amtsbote/amtsbote/pkg/store"
)

// timeLayout is how times are stored: UTC, fixed width, so text order is
// time order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func encTime(t time.Time) string { return store.Truncate(t).Format(timeLayout) }

func encTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return encTime(*t)
}

func decTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("decode time: %w", err)
	}
	return t, nil
}

func decTimePtr(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := decTime(s.String)
	return &t, err
}

// encJSON marshals v as text, which STRICT TEXT columns take.
func encJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode json: %w", err)
	}
	return string(b), nil
}

// rawJSON stores raw JSON as given; empty is NULL.
func rawJSON(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// decRaw returns a column of raw JSON; NULL is nil.
func decRaw(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}

// decJSON decodes what encJSON stored, with encoding/json's semantics on
// the faster v2 engine.
func decJSON(s string, v any) error {
	if err := jsonv1.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("decode json: %w", err)
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }
