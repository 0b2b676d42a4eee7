package health

import (
	"testing"
	"time"
)

func TestChecker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	c := New(2 * time.Second)
	type step struct {
		at      time.Duration
		name    string
		sample  Sample
		healthy bool
	}
	steps := []step{
		// An idle component is healthy however long it idles.
		{0, "wal", Sample{Progress: 0}, true},
		{10 * time.Second, "wal", Sample{Progress: 0}, true},
		// Work arrives: the stall clock starts now, not at the last progress.
		{11 * time.Second, "wal", Sample{Progress: 0, Pending: true}, true},
		{13 * time.Second, "wal", Sample{Progress: 0, Pending: true}, true}, // exactly the limit: still healthy
		{13*time.Second + time.Millisecond, "wal", Sample{Progress: 0, Pending: true}, false},
		// Progress while busy resets the clock.
		{14 * time.Second, "wal", Sample{Progress: 5, Pending: true}, true},
		{15 * time.Second, "wal", Sample{Progress: 9, Pending: true}, true},
		{17 * time.Second, "wal", Sample{Progress: 9, Pending: true}, true},
		{17*time.Second + time.Millisecond, "wal", Sample{Progress: 9, Pending: true}, false},
		// Its work completes: healthy again.
		{18 * time.Second, "wal", Sample{Progress: 10}, true},
		// A second component stuck alone makes the whole unhealthy.
		{18 * time.Second, "loops", Sample{Progress: 1, Pending: true}, true},
		{21 * time.Second, "wal", Sample{Progress: 10}, false},
		{21 * time.Second, "loops", Sample{Progress: 2}, true},
	}
	for i, s := range steps {
		c.Observe(s.name, at(s.at), s.sample)
		ok, why := c.Healthy(at(s.at))
		if ok != s.healthy {
			t.Fatalf("step %d (%v %s %+v): healthy %v (%s), want %v", i, s.at, s.name, s.sample, ok, why, s.healthy)
		}
	}
	c.Observe("loops", at(30*time.Second), Sample{Progress: 2, Pending: true})
	c.Observe("wal", at(30*time.Second), Sample{Progress: 10, Pending: true})
	if got := c.Stuck(at(33 * time.Second)); len(got) != 2 || got[0] != "wal (3s)" || got[1] != "loops (3s)" {
		t.Fatalf("Stuck = %q, want wal then loops, 3s each", got)
	}
}
