package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringtail/ringtail/uring"
	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/errorfs"
	"golang.org/x/sys/unix"
)

// walModes are the writers every WAL test runs against: io_uring with
// RWF_DSYNC writes, io_uring with write → fdatasync chains (walIOUringChain,
// a test-only name openTestWAL understands), and the portable writer.
var walModes = []string{IOUring, walIOUringChain, IOPortable}

const walIOUringChain = "uring-chain"

// openWALMode is Open that also understands walIOUringChain.
func openWALMode(opts Options, from Position, replay func(uint64, []byte) error) (*Log, error) {
	if opts.IO == walIOUringChain {
		opts.IO = IOUring
		forceSyncChain = true
		defer func() { forceSyncChain = false }()
	}
	return Open(opts, from, replay)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type replayed struct {
	seqs     []uint64
	payloads [][]byte
}

func (r *replayed) fn(seq uint64, p []byte) error {
	r.seqs = append(r.seqs, seq)
	r.payloads = append(r.payloads, p)
	return nil
}

func openTestWAL(t *testing.T, opts Options, from Position) (*Log, *replayed) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLog()
	}
	if opts.FileBytes == 0 {
		opts.FileBytes = 256 << 10
	}
	if opts.CycleBytes == 0 {
		opts.CycleBytes = 64 << 10
	}
	wantChain := opts.IO == walIOUringChain
	var r replayed
	w, err := openWALMode(opts, from, r.fn)
	if errors.Is(err, uring.ErrUnavailable) {
		t.Skipf("io_uring unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if ud, ok := w.dev.(*uringDevice); ok && ud.chain != wantChain {
		t.Fatalf("uring device chain mode %v, want %v", ud.chain, wantChain)
	}
	return w, &r
}

func payload(i, n int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, n)
	copy(b, fmt.Sprintf("rec-%d-", i))
	return b
}

// appendSync appends and waits for the record's completion.
func appendSync(w *Log, meta, data []byte) (uint64, error) {
	ch := make(chan error, 1)
	var s uint64
	w.Append(meta, data, func(seq uint64, err error) { s = seq; ch <- err })
	err := <-ch
	return s, err
}

func TestWALRoundTripAndAlignment(t *testing.T) {
	for _, mode := range walModes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			w, _ := openTestWAL(t, Options{Dir: dir, IO: mode}, Position{})
			if mode != IOPortable && w.Mode() != "uring+direct" && w.Mode() != "uring" {
				t.Fatalf("mode %q", w.Mode())
			}
			sizes := []int{1, 7, 100, 4064, 4096, 5000, 40000, 70000}
			var want [][]byte
			for i, n := range sizes {
				p := payload(i, n)
				want = append(want, p)
				seq, err := appendSync(w, []byte("m"), p[1:])
				if err != nil {
					t.Fatal(err)
				}
				if seq != uint64(i+1) {
					t.Fatalf("seq %d, want %d", seq, i+1)
				}
				if c := w.Committed(); c.Offset%uring.BlockSize != 0 || c.Seq != seq+1 {
					t.Fatalf("committed %+v not block aligned or wrong seq", c)
				}
			}
			if w.Cycles() != uint64(len(sizes)) {
				t.Fatalf("%d cycles for %d sequential appends", w.Cycles(), len(sizes))
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			_, r := openTestWAL(t, Options{Dir: dir, IO: mode}, Position{File: 1})
			if len(r.payloads) != len(want) {
				t.Fatalf("replayed %d records, want %d", len(r.payloads), len(want))
			}
			for i := range want {
				if !bytes.Equal(r.payloads[i][:1], []byte("m")) || !bytes.Equal(r.payloads[i][1:], want[i][1:]) || r.seqs[i] != uint64(i+1) {
					t.Fatalf("record %d differs (seq %d)", i, r.seqs[i])
				}
			}
		})
	}
}

// TestWALGroupCommit holds the writer before its first cycle, queues many
// appends from many goroutines, and checks they share exactly one more cycle.
func TestWALGroupCommit(t *testing.T) {
	for _, mode := range walModes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			var r replayed
			opts := Options{Dir: dir, IO: mode, FileBytes: 1 << 20, CycleBytes: 256 << 10, Logger: quietLog()}
			gate := make(chan struct{})
			entered := make(chan struct{}, 10)
			w, err := openWALWithHook(opts, r.fn, func() {
				entered <- struct{}{}
				<-gate
			})
			if errors.Is(err, uring.ErrUnavailable) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var order []uint64
			add := func(i int) {
				wg.Add(1)
				w.Append(nil, payload(i, 200), func(seq uint64, err error) {
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					order = append(order, seq)
					mu.Unlock()
					wg.Done()
				})
			}
			add(0)
			<-entered // the writer is about to build cycle 1
			var ag sync.WaitGroup
			for g := 0; g < 10; g++ {
				ag.Add(1)
				go func(g int) {
					defer ag.Done()
					for i := 0; i < 10; i++ {
						add(1 + g*10 + i)
					}
				}(g)
			}
			ag.Wait()
			close(gate) // cycle 1 takes all 101
			wg.Wait()
			if w.Cycles() != 1 || w.Records() != 101 {
				t.Fatalf("%d cycles, %d records; want 1 cycle of 101", w.Cycles(), w.Records())
			}
			for i, s := range order {
				if s != uint64(i+1) {
					t.Fatalf("completion %d has seq %d", i, s)
				}
			}
		})
	}
}

func openWALWithHook(opts Options, replay func(uint64, []byte) error, hook func()) (*Log, error) {
	walTestHook = hook
	defer func() { walTestHook = nil }()
	return openWALMode(opts, Position{}, replay)
}

// TestWALRecycleAndStale fills several small files, releasing behind a
// checkpoint, so files are reused; recovery from the checkpoint must replay
// exactly the records after it, never stale ones from a reused file.
func TestWALRecycleAndStale(t *testing.T) {
	for _, mode := range walModes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, IO: mode, FileBytes: 64 << 10, CycleBytes: 16 << 10}
			w, _ := openTestWAL(t, opts, Position{})
			var ckpt Position
			var afterCkpt [][]byte
			for i := 0; i < 200; i++ {
				p := payload(i, 1000+i*13%3000)
				if _, err := appendSync(w, nil, p); err != nil {
					t.Fatal(err)
				}
				afterCkpt = append(afterCkpt, p)
				if i%37 == 36 {
					ckpt = w.Committed()
					w.Release(ckpt)
					afterCkpt = nil
				}
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
			if len(files) > 2+walSpareFiles+1 {
				t.Fatalf("%d wal files after recycling: %v", len(files), files)
			}
			w.Close()
			w2, r := openTestWAL(t, opts, ckpt)
			if len(r.payloads) != len(afterCkpt) {
				t.Fatalf("replayed %d, want %d", len(r.payloads), len(afterCkpt))
			}
			for i := range afterCkpt {
				if !bytes.Equal(r.payloads[i], afterCkpt[i]) || r.seqs[i] != ckpt.Seq+uint64(i) {
					t.Fatalf("record %d differs", i)
				}
			}
			// Continue after recovery, then recover again from the same checkpoint.
			for i := 0; i < 20; i++ {
				p := payload(1000+i, 3000)
				if _, err := appendSync(w2, nil, p); err != nil {
					t.Fatal(err)
				}
				afterCkpt = append(afterCkpt, p)
			}
			w2.Close()
			_, r = openTestWAL(t, opts, ckpt)
			if len(r.payloads) != len(afterCkpt) {
				t.Fatalf("second recovery replayed %d, want %d", len(r.payloads), len(afterCkpt))
			}
		})
	}
}

// TestWALTornTail corrupts the last record: recovery stops before it, and
// records written after recovery follow on.
func TestWALTornTail(t *testing.T) {
	for _, mode := range walModes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, IO: mode}
			w, _ := openTestWAL(t, opts, Position{})
			for i := 0; i < 5; i++ {
				if _, err := appendSync(w, nil, payload(i, 3000)); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			// Record 5 (seq 5) is the first of the fifth block; flip a payload byte.
			name := filepath.Join(dir, fmt.Sprintf("%020d.wal", 1))
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0xff}, 4*uring.BlockSize+walHeaderSize+100); err != nil {
				t.Fatal(err)
			}
			f.Close()
			w2, r := openTestWAL(t, opts, Position{File: 1})
			if len(r.seqs) != 4 {
				t.Fatalf("replayed %d records past a torn one, want 4", len(r.seqs))
			}
			if seq, err := appendSync(w2, nil, payload(9, 100)); err != nil || seq != 5 {
				t.Fatalf("after recovery: seq %d, %v", seq, err)
			}
			w2.Close()
			_, r = openTestWAL(t, opts, Position{File: 1})
			if len(r.seqs) != 5 || !bytes.Equal(r.payloads[4], payload(9, 100)) {
				t.Fatalf("second recovery: %d records", len(r.seqs))
			}
		})
	}
}

// TestWALFailedCycle fails a sync: the cycle's records fail, and even when
// their bytes reached the file they are never replayed.
func TestWALFailedCycle(t *testing.T) {
	dir := t.TempDir()
	ffs := errorfs.New(vfs.OSFS{})
	ffs.SetFilter(walSuffix) // not the preparer's file
	opts := Options{Dir: dir, FS: ffs, IO: IOPortable}
	w, _ := openTestWAL(t, opts, Position{})
	if _, err := appendSync(w, nil, payload(1, 500)); err != nil {
		t.Fatal(err)
	}
	ffs.FailNth(errorfs.OpSync, 1, unix.EIO)
	if _, err := appendSync(w, nil, payload(2, 500)); !errors.Is(err, unix.EIO) {
		t.Fatalf("want EIO, got %v", err)
	}
	ffs.FailFrom(errorfs.OpWrite, 1, unix.ENOSPC)
	if _, err := appendSync(w, nil, payload(3, 500)); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	ffs.Clear()
	if seq, err := appendSync(w, nil, payload(4, 100)); err != nil || seq != 2 {
		t.Fatalf("after the failures: seq %d, %v", seq, err)
	}
	w.Close()
	_, r := openTestWAL(t, Options{Dir: dir, IO: IOPortable}, Position{File: 1})
	if len(r.payloads) != 2 || !bytes.Equal(r.payloads[1], payload(4, 100)) {
		t.Fatalf("replayed %d records", len(r.payloads))
	}
}

// TestWALShortWrite makes the io_uring writer's first write short and checks
// the remainder (and, in chain mode, the cancelled sync) is resubmitted.
func TestWALShortWrite(t *testing.T) {
	for _, mode := range []string{IOUring, walIOUringChain} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			w, _ := openTestWAL(t, Options{Dir: dir, IO: mode}, Position{})
			d := w.dev.(*uringDevice)
			if _, err := appendSync(w, nil, payload(0, 100)); err != nil {
				t.Fatal(err)
			}
			// The writer goroutine is idle: set the flag under the queue lock it takes.
			w.mu.Lock()
			d.shortOnce = true
			w.mu.Unlock()
			big := payload(1, 5*uring.BlockSize)
			if _, err := appendSync(w, nil, big); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			n := d.resubmits
			w.mu.Unlock()
			if n != 1 {
				t.Fatalf("%d resubmissions, want 1", n)
			}
			w.Close()
			_, r := openTestWAL(t, Options{Dir: dir, IO: mode}, Position{File: 1})
			if len(r.payloads) != 2 || !bytes.Equal(r.payloads[1], big) {
				t.Fatalf("replayed %d records", len(r.payloads))
			}
		})
	}
}

// TestWALDsyncRefused has the kernel refuse the io_uring writer's first
// write for an unknown RWF flag (as a kernel without RWF_DSYNC support would)
// and checks the writer falls back to write → fdatasync chains, keeps the
// record and says so once in the log.
func TestWALDsyncRefused(t *testing.T) {
	dir := t.TempDir()
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logBuf}, nil))
	w, _ := openTestWAL(t, Options{Dir: dir, IO: IOUring, Logger: log}, Position{})
	d := w.dev.(*uringDevice)
	// The writer goroutine is idle: set the flags under the queue lock it takes.
	w.mu.Lock()
	d.dsyncFlags = 1 << 30
	w.mu.Unlock()
	for i := 0; i < 3; i++ {
		if _, err := appendSync(w, nil, payload(i, 300)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	w.mu.Lock()
	chain := d.chain
	w.mu.Unlock()
	if !chain {
		t.Fatal("the writer did not fall back to the fdatasync chain")
	}
	w.Close()
	logMu.Lock()
	got := strings.Count(logBuf.String(), "refuses RWF_DSYNC")
	logMu.Unlock()
	if got != 1 {
		t.Fatalf("fallback logged %d times, want once:\n%s", got, logBuf.String())
	}
	_, r := openTestWAL(t, Options{Dir: dir, IO: IOUring}, Position{File: 1})
	if len(r.payloads) != 3 || !bytes.Equal(r.payloads[2], payload(2, 300)) {
		t.Fatalf("replayed %d records", len(r.payloads))
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestWALUnknownIO(t *testing.T) {
	if _, err := Open(Options{Dir: t.TempDir(), IO: "fast", Logger: quietLog()}, Position{}, nil); err == nil {
		t.Fatal("unknown wal.io accepted")
	}
}

func TestWALAppendChecked(t *testing.T) {
	for _, mode := range walModes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			w, _ := openTestWAL(t, Options{Dir: dir, IO: mode}, Position{})
			ch := make(chan error, 2)
			w.AppendChecked(nil, payload(1, 10), func() bool { return false }, func(_ uint64, err error) { ch <- err })
			w.AppendChecked(nil, payload(2, 10), func() bool { return true }, func(_ uint64, err error) { ch <- err })
			if err := <-ch; !errors.Is(err, ErrCanceled) {
				t.Fatalf("rejected record: %v", err)
			}
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
			w.Close()
			_, r := openTestWAL(t, Options{Dir: dir, IO: mode}, Position{File: 1})
			if len(r.payloads) != 1 || !bytes.Equal(r.payloads[0], payload(2, 10)) || r.seqs[0] != 1 {
				t.Fatalf("replayed %d records", len(r.payloads))
			}
		})
	}
}

// TestWALPreparedFiles: without spares the writer takes files the preparer
// zero-filled in the background; a prepared file left behind is removed at
// open and every record replays.
func TestWALPreparedFiles(t *testing.T) {
	for _, mode := range walModes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, IO: mode, FileBytes: 64 << 10, CycleBytes: 16 << 10}
			w, _ := openTestWAL(t, opts, Position{})
			var all [][]byte
			for i := 0; i < 120; i++ {
				p := payload(i, 2000+i*7%1500)
				if _, err := appendSync(w, nil, p); err != nil {
					t.Fatal(err)
				}
				all = append(all, p)
			}
			if w.prepUsed.Load() == 0 {
				t.Fatal("the writer never used a prepared file")
			}
			w.Close()
			if err := os.WriteFile(filepath.Join(dir, walPrepName), []byte("partial"), 0o644); err != nil {
				t.Fatal(err)
			}
			w2, r := openTestWAL(t, opts, Position{File: 1})
			if len(r.payloads) != len(all) {
				t.Fatalf("replayed %d, want %d", len(r.payloads), len(all))
			}
			for i := range all {
				if !bytes.Equal(r.payloads[i], all[i]) {
					t.Fatalf("record %d differs", i)
				}
			}
			w2.Close()
			// The partial file is gone: what is there now is a new, complete one.
			if st, err := os.Stat(filepath.Join(dir, walPrepName)); err == nil && st.Size() != opts.FileBytes {
				t.Fatalf("prepared file of %d bytes after open", st.Size())
			}
		})
	}
}

// TestWALTwoInFlight: a second cycle is written while the first is in
// flight; when the first fails, the second fails too (even though its own
// I/O succeeded), completions stay in order, the writer rewinds, and only
// records reported durable replay.
func TestWALTwoInFlight(t *testing.T) {
	dir := t.TempDir()
	ffs := errorfs.New(vfs.OSFS{})
	ffs.SetFilter(walSuffix)
	opts := Options{Dir: dir, FS: ffs, IO: IOPortable, InFlight: 2}
	entered1, second, firstDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	walLaneTestHook = func(first uint64) {
		switch n := calls.Add(1); {
		case n == 2: // cycle 1 of the test: fails once cycle 2 is in flight
			close(entered1)
			<-second
			ffs.FailNth(errorfs.OpSync, 1, unix.EIO)
		case n == 3: // cycle 2: written after cycle 1 completed
			close(second)
			<-firstDone
		}
	}
	w, err := openWALMode(opts, Position{}, func(uint64, []byte) error { return nil })
	walLaneTestHook = nil
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := appendSync(w, nil, payload(1, 500)); err != nil || seq != 1 {
		t.Fatalf("first append: %d, %v", seq, err)
	}
	var mu sync.Mutex
	var order []int
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	w.Append(nil, payload(2, 500), func(_ uint64, err error) {
		mu.Lock()
		order, errs[0] = append(order, 0), err
		mu.Unlock()
		close(firstDone)
		wg.Done()
	})
	<-entered1
	w.Append(nil, payload(3, 500), func(_ uint64, err error) {
		mu.Lock()
		order, errs[1] = append(order, 1), err
		mu.Unlock()
		wg.Done()
	})
	wg.Wait()
	if len(order) != 2 || order[0] != 0 || order[1] != 1 {
		t.Fatalf("completion order %v", order)
	}
	for i, err := range errs {
		if !errors.Is(err, unix.EIO) {
			t.Fatalf("record %d of the failed cycles: %v", i, err)
		}
	}
	if seq, err := appendSync(w, nil, payload(4, 100)); err != nil || seq != 2 {
		t.Fatalf("after the failure: seq %d, %v", seq, err)
	}
	w.Close()
	_, r := openTestWAL(t, Options{Dir: dir, IO: IOPortable}, Position{File: 1})
	if len(r.payloads) != 2 || !bytes.Equal(r.payloads[1], payload(4, 100)) {
		t.Fatalf("replayed %d records", len(r.payloads))
	}
}
