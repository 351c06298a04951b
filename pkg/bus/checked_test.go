package bus_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/bus/bustest"
)

// TestCheckedState proves that a checked entry reads back as written and
// that one changed behind its digest, or without one, is ErrCorrupt.
func TestCheckedState(t *testing.T) {
	b, _ := bustest.Bus(t)
	ctx := context.Background()
	value := bytes.Repeat([]byte(`{"encryptedMetadata":"eyJhbGciOi…"}`), 500)
	if _, err := b.PutCheckedState(ctx, "payload.a", value); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetCheckedState(ctx, "payload.a")
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(value))
	}
	if _, err := b.GetCheckedState(ctx, "payload.none"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("missing key: %v, want ErrNotFound", err)
	}
	if _, err := b.PutCheckedState(ctx, "payload.empty", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetCheckedState(ctx, "payload.empty"); err != nil || len(got) != 0 {
		t.Errorf("empty value read back as %q (%v)", got, err)
	}

	stored, err := b.GetState(ctx, "payload.a")
	if err != nil {
		t.Fatal(err)
	}
	// A value appended to a CheckedBuffer is stored as PutCheckedState
	// stores it.
	if _, err := b.PutChecked(ctx, "payload.b", append(bus.CheckedBuffer(len(value)), value...)); err != nil {
		t.Fatal(err)
	}
	if b2, err := b.GetState(ctx, "payload.b"); err != nil || !bytes.Equal(b2.Value, stored.Value) {
		t.Errorf("PutChecked stored %.80q (%v), want %.80q", b2.Value, err, stored.Value)
	}
	if head, _, _ := bytes.Cut(stored.Value, []byte("\n")); len(head)+1 != bus.CheckedHeaderLen {
		t.Errorf("digest line %d bytes, CheckedHeaderLen %d", len(head)+1, bus.CheckedHeaderLen)
	}
	if _, err := b.PutChecked(ctx, "payload.c", []byte("short")); err == nil {
		t.Error("PutChecked took an entry without room for its digest line")
	}
	changed := bytes.Clone(stored.Value)
	changed[len(changed)-5] ^= 1
	truncated := stored.Value[:len(stored.Value)-1]
	for name, raw := range map[string][]byte{
		"changed":      changed,
		"truncated":    truncated,
		"no digest":    value,
		"other digest": append([]byte("SHA-256=AAAA\n"), value...),
		"empty":        {},
	} {
		if _, err := b.PutState(ctx, "payload.bad", raw); err != nil {
			t.Fatal(err)
		}
		if _, err := b.GetCheckedState(ctx, "payload.bad"); !errors.Is(err, bus.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}
