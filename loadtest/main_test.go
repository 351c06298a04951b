package main

import "testing"

// TestLoadStop: the first interrupt during a load ends it, once; one
// outside a load, or a second one, is left to end the run.
func TestLoadStop(t *testing.T) {
	var s loadStop
	if s.fire() {
		t.Fatal("an interrupt before the load ended a load")
	}
	ended := 0
	disarm := s.arm(func() { ended++ })
	if !s.fire() || ended != 1 {
		t.Fatalf("the first interrupt during the load: ended %d times", ended)
	}
	if s.fire() || ended != 1 {
		t.Fatalf("a second interrupt ended the load again (%d times), want it to end the run", ended)
	}
	disarm()
	s.arm(func() { ended++ })()
	if s.fire() || ended != 1 {
		t.Fatal("an interrupt after the load ended it")
	}
}
