package group

import (
	"fmt"
	"testing"
	"time"
)

// TestTickCostIsExpiredOnly: 5000 groups heartbeating; Tick must touch
// only the deadlines that expired, never scan the groups.
func TestTickCostIsExpiredOnly(t *testing.T) {
	const n = 5000
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	ids := make([]string, n)
	gens := make([]int32, n)
	for i := range n {
		ids[i], gens[i] = h.stableMember(fmt.Sprintf("g%d", i), joinOpt{version: 3, session: 10 * time.Second}, "A")
	}
	before := h.c.TimersFired()
	for range 5 {
		h.advance(3 * time.Second)
		for i := range n {
			if code := h.heartbeat(fmt.Sprintf("g%d", i), ids[i], gens[i], ""); code != 0 {
				t.Fatalf("heartbeat %v", errName(code))
			}
		}
	}
	if d := h.c.TimersFired() - before; d != 0 {
		t.Fatalf("Ticks with nothing expired touched %d timers", d)
	}
	// Ten members go quiet; the next Tick past their session touches
	// exactly their ten timers (their groups go Empty, arming retention
	// far in the future).
	quiet := 10
	h.advance(3 * time.Second)
	for i := quiet; i < n; i++ {
		h.heartbeat(fmt.Sprintf("g%d", i), ids[i], gens[i], "")
	}
	before = h.c.TimersFired()
	h.advance(7 * time.Second)
	if d := h.c.TimersFired() - before; d != uint64(quiet) {
		t.Fatalf("touched %d timers, want %d", d, quiet)
	}
	for i := range n {
		want := Stable
		if i < quiet {
			want = Empty
		}
		if s := h.state(fmt.Sprintf("g%d", i)); s != want {
			t.Fatalf("g%d state %v, want %v", i, s, want)
		}
	}
}
