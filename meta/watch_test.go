package meta

import (
	"sync"
	"testing"
	"time"
)

// TestPublishedWakesWatchers: a watcher that read a state is woken by the next store, sees the
// newest state after several stores, and one that watched before anything was stored is woken
// by the first.
func TestPublishedWakesWatchers(t *testing.T) {
	var p Published
	if p.Load() != nil {
		t.Fatal("zero Published holds a state")
	}
	st, early := p.Watch()
	if st != nil {
		t.Fatal("Watch before any store returned a state")
	}
	a, b := NewState(), NewState()
	p.Store(a)
	waitClosed(t, early)
	st, changed := p.Watch()
	if st != a {
		t.Fatal("Watch did not return the stored state")
	}
	select {
	case <-changed:
		t.Fatal("channel closed before a newer state was stored")
	default:
	}
	p.Store(NewState())
	p.Store(b)
	waitClosed(t, changed)
	if st, _ := p.Watch(); st != b {
		t.Fatal("after two stores Watch did not return the newest")
	}
}

// TestPublishedConcurrentWatchers: watchers that follow a storing writer (run with -race) all
// reach its last state.
func TestPublishedConcurrentWatchers(t *testing.T) {
	var p Published
	states := make([]*State, 200)
	for i := range states {
		states[i] = NewState()
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				st, changed := p.Watch()
				if st == states[len(states)-1] {
					return
				}
				select {
				case <-changed:
				case <-time.After(10 * time.Second):
					t.Error("watcher not woken")
					return
				}
			}
		}()
	}
	for _, s := range states {
		p.Store(s)
	}
	wg.Wait()
}

// TestLocalLogWatch: every applied command wakes a watcher of the LocalLog; a rejected one
// publishes nothing.
func TestLocalLogWatch(t *testing.T) {
	l := openLocal(t, t.TempDir(), 1000)
	st, changed := l.Watch()
	if st != l.State() {
		t.Fatal("Watch and State disagree")
	}
	propose(t, l, InitCluster{ClusterID: "c"})
	waitClosed(t, changed)
	st, changed = l.Watch()
	if st.ClusterID() != "c" {
		t.Fatalf("watched state has cluster id %q", st.ClusterID())
	}
	if _, err := l.Propose(t.Context(), InitCluster{ClusterID: "other"}); err == nil {
		t.Fatal("second InitCluster applied")
	}
	select {
	case <-changed:
		t.Fatal("a rejected command woke the watcher")
	default:
	}
}

func waitClosed(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed")
	}
}
