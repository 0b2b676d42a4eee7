package broker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func tp(p int32) TopicPartition { return TopicPartition{Topic: "t", Partition: p} }

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A parked operation completes once a Notify of one of its partitions finds it ready, exactly
// once, not timed out, and leaves no trace in the purgatory.
func TestPurgatoryCompletesOnNotify(t *testing.T) {
	for _, cheap := range []bool{true, false} {
		p := NewPurgatory(time.Now)
		var ok atomic.Bool
		var calls atomic.Int32
		var timedOut atomic.Bool
		p.Park(NewDelayed([]TopicPartition{tp(0), tp(1)}, time.Hour, cheap, ok.Load, func(to bool) {
			calls.Add(1)
			timedOut.Store(to)
		}))
		p.Notify(tp(1)) // not ready yet
		if cheap && calls.Load() != 0 {
			t.Fatalf("cheap=%v: completed before it was ready", cheap)
		}
		ok.Store(true)
		p.Notify(tp(2)) // not watched: no effect
		if cheap && calls.Load() != 0 {
			t.Fatalf("cheap=%v: completed by a partition it does not watch", cheap)
		}
		p.Notify(tp(1))
		waitFor(t, "completion", func() bool { return calls.Load() == 1 })
		p.Notify(tp(0))
		p.Close()
		if calls.Load() != 1 || timedOut.Load() {
			t.Fatalf("cheap=%v: calls=%d timedOut=%v, want 1 and false", cheap, calls.Load(), timedOut.Load())
		}
		if p.Parked() != 0 || len(p.watchers) != 0 || len(p.deadlines) != 0 {
			t.Fatalf("cheap=%v: left %d parked, %d watcher lists, %d deadlines", cheap, p.Parked(), len(p.watchers), len(p.deadlines))
		}
	}
}

// An operation never ready completes at its deadline, timed out, and is gone from the watcher
// lists, so partitions nobody notifies do not collect dead operations.
func TestPurgatoryDeadline(t *testing.T) {
	p := NewPurgatory(time.Now)
	defer p.Close()
	done := make(chan bool, 1)
	p.Park(NewDelayed([]TopicPartition{tp(0)}, 20*time.Millisecond, false, func() bool { return false }, func(to bool) { done <- to }))
	if to := <-done; !to {
		t.Fatal("completed without timing out")
	}
	waitFor(t, "cleanup", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.watchers) == 0 && len(p.deadlines) == 0 && p.Parked() == 0
	})
}

// Deadlines fire in order whatever order the operations were parked in.
func TestPurgatoryDeadlineOrder(t *testing.T) {
	p := NewPurgatory(time.Now)
	defer p.Close()
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i, d := range []time.Duration{60, 20, 40} {
		wg.Add(1)
		p.Park(NewDelayed([]TopicPartition{tp(0)}, d*time.Millisecond, true, func() bool { return false }, func(bool) {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			wg.Done()
		}))
	}
	wg.Wait()
	if order[0] != 1 || order[1] != 2 || order[2] != 0 {
		t.Fatalf("expired in order %v, want [1 2 0]", order)
	}
}

// Many goroutines notifying while operations park: each completes exactly once.
func TestPurgatoryConcurrentNotify(t *testing.T) {
	p := NewPurgatory(time.Now)
	const ops = 500
	var hw atomic.Int64
	counts := make([]atomic.Int32, ops)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				hw.Add(1)
				p.Notify(tp(int32(hw.Load() % 3)))
			}
		}()
	}
	for i := 0; i < ops; i++ {
		target := hw.Load() + 50
		cheap := i%2 == 0
		p.Park(NewDelayed([]TopicPartition{tp(int32(i % 3))}, time.Hour, cheap,
			func() bool { return hw.Load() >= target }, func(bool) { counts[i].Add(1) }))
	}
	waitFor(t, "every operation", func() bool { return p.Parked() == 0 })
	close(stop)
	wg.Wait()
	p.Close()
	for i := range counts {
		if n := counts[i].Load(); n != 1 {
			t.Fatalf("operation %d completed %d times", i, n)
		}
	}
}

// Close answers every parked operation as timed out; one parked after Close completes at once.
func TestPurgatoryClose(t *testing.T) {
	p := NewPurgatory(time.Now)
	var timedOut atomic.Int32
	for i := 0; i < 3; i++ {
		p.Park(NewDelayed([]TopicPartition{tp(0)}, time.Hour, i == 0, func() bool { return false }, func(to bool) {
			if to {
				timedOut.Add(1)
			}
		}))
	}
	p.Close()
	if timedOut.Load() != 3 {
		t.Fatalf("%d of 3 completed as timed out by Close", timedOut.Load())
	}
	late := false
	p.Park(NewDelayed([]TopicPartition{tp(0)}, time.Hour, false, func() bool { return false }, func(to bool) { late = to }))
	if !late {
		t.Fatal("an operation parked after Close did not complete at once")
	}
}
