package crashfs

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/ringtail/ringtail/vfs"
)

// CutAtEveryOperation runs a workload once per storage operation of an uncut run (total of
// them, from Ops), cutting the power just before that operation, once cleanly and once tearing
// it, and checks each cut directory in a subtest. prepare (may be nil) fills a fresh directory
// before its run; run drives the workload on cfs and returns what it saw acknowledged; check
// recovers from dir with a new file system and holds the recovery to r. Background goroutines
// (a WAL preparer, a checkpointer) make the count vary a little from run to run, so cut points
// go a few past total; a cut past the end of a run is a clean end, checked the same way. A run
// that hangs for a minute fails the test with every goroutine's stack.
func CutAtEveryOperation[R any](t *testing.T, base string, total uint64, prepare func(dir string),
	run func(dir string, cfs *FS) R, check func(t *testing.T, dir string, r R)) {
	t.Helper()
	atEveryOperation(t, base, total, []string{"cut", "torn"}, prepare, run, check)
	t.Logf("cut at each of %d operations, clean and torn", total)
}

// KillAtEveryOperation is CutAtEveryOperation with the process killed instead of the power
// cut (KillAt): whatever was written stays, synced or not.
func KillAtEveryOperation[R any](t *testing.T, base string, total uint64, prepare func(dir string),
	run func(dir string, cfs *FS) R, check func(t *testing.T, dir string, r R)) {
	t.Helper()
	atEveryOperation(t, base, total, []string{"kill"}, prepare, run, check)
	t.Logf("killed at each of %d operations", total)
}

// atEveryOperation runs the workload once per operation and way of stopping it: "cut" (a power
// cut), "torn" (one that tears the write it stops) or "kill".
func atEveryOperation[R any](t *testing.T, base string, total uint64, ways []string, prepare func(dir string),
	run func(dir string, cfs *FS) R, check func(t *testing.T, dir string, r R)) {
	t.Helper()
	for n := uint64(1); n <= total+5; n++ {
		for _, way := range ways {
			dir := filepath.Join(base, fmt.Sprintf("%s-%d", way, n))
			if prepare != nil {
				prepare(dir)
			}
			cfs := New(vfs.OSFS{})
			if way == "kill" {
				cfs.KillAt(n)
			} else {
				cfs.CrashAt(n, way == "torn")
			}
			var r R
			withWatchdog(t, fmt.Sprintf("%s at op %d", way, n), func() { r = run(dir, cfs) })
			if t.Failed() {
				return
			}
			t.Run(fmt.Sprintf("op%d-%s", n, way), func(t *testing.T) { check(t, dir, r) })
			os.RemoveAll(dir)
			if t.Failed() {
				return
			}
		}
	}
}

// withWatchdog runs f and fails the test, with every goroutine's stack, if it has not returned
// within a minute: a hang then says where it is instead of waiting for go test's timeout.
func withWatchdog(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		t.Fatalf("%s: still running after a minute; goroutine stacks are above", what)
	}
}
