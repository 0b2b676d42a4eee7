package wal

import (
	"runtime"
	"testing"
)

// TestWALProgressAndWedge: Progress shows pending work while the writer is wedged and settled
// moving once it is released; an idle writer has nothing pending.
func TestWALProgressAndWedge(t *testing.T) {
	w, _ := openTestWAL(t, Options{Dir: t.TempDir(), IO: IOPortable}, Position{})
	defer w.Close()
	if settled, pending := w.Progress(); settled != 0 || pending {
		t.Fatalf("new log: settled %d pending %v, want 0 false", settled, pending)
	}
	done := make(chan error, 1)
	w.Append([]byte("m"), []byte("first"), func(_ uint64, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if settled, pending := w.Progress(); settled != 1 || pending {
		t.Fatalf("after one append: settled %d pending %v, want 1 false", settled, pending)
	}

	release := w.Wedge()
	w.Append([]byte("m"), []byte("second"), func(_ uint64, err error) { done <- err })
	// The writer is held before the record's cycle: it stays pending and unsettled.
	for !w.held.Load() {
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("a wedged writer completed a record (err %v)", err)
	default:
	}
	if settled, pending := w.Progress(); settled != 1 || !pending {
		t.Fatalf("wedged: settled %d pending %v, want 1 true", settled, pending)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if settled, pending := w.Progress(); settled != 2 || pending {
		t.Fatalf("released: settled %d pending %v, want 2 false", settled, pending)
	}
}
