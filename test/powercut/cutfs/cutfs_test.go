package cutfs

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain doubles as a cutfs server for TestPowerCut, which kills it.
func TestMain(m *testing.M) {
	if backing := os.Getenv("CUTFS_TEST_BACKING"); backing != "" {
		srv, err := Mount(backing, os.Getenv("CUTFS_TEST_MOUNT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Println("ready")
		srv.Wait()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// skipWithoutFUSE skips the test, saying why, when this machine has no FUSE.
func skipWithoutFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE is not available here: %v", err)
	}
}

// mount mounts a cutfs of a fresh backing directory in this process. It is
// unmounted when the test ends (lazily if something is still open).
func mountT(t *testing.T) (backing, mnt string, srv *FS) {
	t.Helper()
	skipWithoutFUSE(t)
	backing, mnt = t.TempDir(), t.TempDir()
	srv, err := Mount(backing, mnt)
	if err != nil {
		if Refused(err) {
			t.Skipf("FUSE mount refused here (not root, or no FUSE in the kernel?): %v", err)
		}
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return backing, mnt, srv
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantFile checks a file's contents; reading through the mount opens the
// file anew, which drops the kernel's page cache for it (no KEEP_CACHE), so
// the data comes from cutfs.
func wantFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got := readFile(t, path)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes %q, want %d bytes %q", path, len(got), trim(got), len(want), trim(want))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != int64(len(want)) {
		t.Fatalf("%s: stat size %d, want %d", path, st.Size(), len(want))
	}
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func openT(t *testing.T, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteHeldUntilFsync(t *testing.T) {
	backing, mnt, _ := mountT(t)
	f := openT(t, filepath.Join(mnt, "f"), os.O_CREATE|os.O_RDWR)
	_, err := f.Write([]byte("hello"))
	must(t, err)
	wantFile(t, filepath.Join(mnt, "f"), []byte("hello"))
	wantFile(t, filepath.Join(backing, "f"), []byte{}) // the name is there at once, the data is not

	must(t, f.Sync())
	wantFile(t, filepath.Join(backing, "f"), []byte("hello"))

	// Closing is no sync: the overwrite stays held after the last close.
	_, err = f.WriteAt([]byte("J"), 0)
	must(t, err)
	must(t, f.Close())
	wantFile(t, filepath.Join(mnt, "f"), []byte("Jello"))
	wantFile(t, filepath.Join(backing, "f"), []byte("hello"))

	// A later open sees it, and its fdatasync writes it.
	g := openT(t, filepath.Join(mnt, "f"), os.O_RDONLY)
	must(t, unix.Fdatasync(int(g.Fd())))
	wantFile(t, filepath.Join(backing, "f"), []byte("Jello"))
}

func TestHandlesShareHeldData(t *testing.T) {
	backing, mnt, _ := mountT(t)
	p := filepath.Join(mnt, "seg")
	w := openT(t, p, os.O_CREATE|os.O_WRONLY)
	r := openT(t, p, os.O_RDONLY) // opened before the write, as the broker's reader is
	_, err := w.WriteAt(bytes.Repeat([]byte("a"), 10000), 0)
	must(t, err)

	buf := make([]byte, 10010)
	n, _ := r.ReadAt(buf, 0)
	if n != 10000 || !bytes.Equal(buf[:n], bytes.Repeat([]byte("a"), 10000)) {
		t.Fatalf("reader saw %d bytes %q…", n, trim(buf[:n]))
	}
	// O_DIRECT reads bypass the kernel's page cache: cutfs itself merges.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("O_DIRECT open through the mount: %v", err)
	}
	defer unix.Close(fd)
	abuf := alignedBuf(t, 3*pageSize)
	n, err = unix.Pread(fd, abuf, 0)
	must(t, err)
	if n != 10000 || !bytes.Equal(abuf[:n], bytes.Repeat([]byte("a"), 10000)) {
		t.Fatalf("O_DIRECT reader saw %d bytes", n)
	}

	// A sync through the read-only descriptor syncs the file.
	must(t, r.Sync())
	wantFile(t, filepath.Join(backing, "seg"), bytes.Repeat([]byte("a"), 10000))
}

func alignedBuf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	must(t, err)
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

func TestTruncateAndSize(t *testing.T) {
	backing, mnt, _ := mountT(t)
	p := filepath.Join(mnt, "f")
	f := openT(t, p, os.O_CREATE|os.O_RDWR)
	old := bytes.Repeat([]byte("o"), 10000)
	_, err := f.Write(old)
	must(t, err)
	must(t, f.Sync())

	// Shrinking, then growing again, must show zeros, not the old bytes
	// that the backing file still has.
	must(t, f.Truncate(100))
	wantFile(t, p, old[:100])
	wantFile(t, filepath.Join(backing, "f"), old)
	must(t, os.Truncate(p, 8192)) // by name, with no descriptor in the request
	want := append(append([]byte{}, old[:100]...), make([]byte, 8092)...)
	wantFile(t, p, want)
	_, err = f.WriteAt([]byte("x"), 9000)
	must(t, err)
	want = append(append(want, make([]byte, 9000-8192)...), 'x')
	wantFile(t, p, want)
	wantFile(t, filepath.Join(backing, "f"), old)

	must(t, f.Sync())
	wantFile(t, filepath.Join(backing, "f"), want)

	// Truncation to zero is held like the rest.
	must(t, f.Truncate(0))
	wantFile(t, p, []byte{})
	wantFile(t, filepath.Join(backing, "f"), want)
}

func TestFallocate(t *testing.T) {
	backing, mnt, _ := mountT(t)
	p := filepath.Join(mnt, "f")
	f := openT(t, p, os.O_CREATE|os.O_RDWR)
	fd := int(f.Fd())
	data := bytes.Repeat([]byte("d"), 3*pageSize)
	_, err := f.Write(data)
	must(t, err)
	must(t, f.Sync())

	must(t, unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20))
	wantFile(t, p, data)
	must(t, unix.Fallocate(fd, 0, 0, 5*pageSize)) // preallocation that grows the file
	want := append(append([]byte{}, data...), make([]byte, 2*pageSize)...)
	wantFile(t, p, want)
	must(t, unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 100, pageSize))
	clear(want[100 : 100+pageSize])
	wantFile(t, p, want)
	must(t, unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 2*pageSize+5, 4*pageSize)) // grows too
	clear(want[2*pageSize+5:])
	want = append(want, make([]byte, 2*pageSize+5+4*pageSize-len(want))...)
	wantFile(t, p, want)
	wantFile(t, filepath.Join(backing, "f"), data)

	must(t, f.Sync())
	wantFile(t, filepath.Join(backing, "f"), want)
}

// TestDsyncWritesAreSynced covers the writes that sync themselves: an
// O_DSYNC descriptor, RWF_DSYNC per write, and RWF_DSYNC on an O_DIRECT
// descriptor (the broker's WAL write, minus io_uring).
func TestDsyncWritesAreSynced(t *testing.T) {
	backing, mnt, _ := mountT(t)

	f := openT(t, filepath.Join(mnt, "dsync"), os.O_CREATE|os.O_WRONLY|unix.O_DSYNC)
	_, err := f.Write([]byte("o_dsync"))
	must(t, err)
	wantFile(t, filepath.Join(backing, "dsync"), []byte("o_dsync"))

	g := openT(t, filepath.Join(mnt, "rwf"), os.O_CREATE|os.O_WRONLY)
	_, err = unix.Pwritev2(int(g.Fd()), [][]byte{[]byte("rwf_dsync")}, 0, unix.RWF_DSYNC)
	must(t, err)
	_, err = g.WriteAt([]byte("!"), 9) // a plain write after it is held again
	must(t, err)
	wantFile(t, filepath.Join(backing, "rwf"), []byte("rwf_dsync"))
	wantFile(t, filepath.Join(mnt, "rwf"), []byte("rwf_dsync!"))

	// The broker's O_DIRECT probe creates its file like this.
	fd, err := unix.Open(filepath.Join(mnt, "direct"), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("O_DIRECT create through the mount: %v", err)
	}
	defer unix.Close(fd)
	buf := alignedBuf(t, pageSize)
	copy(buf, "direct")
	_, err = unix.Pwrite(fd, buf, 0)
	must(t, err)
	wantFile(t, filepath.Join(backing, "direct"), []byte{})
	_, err = unix.Pwritev2(fd, [][]byte{buf}, pageSize, unix.RWF_DSYNC)
	must(t, err)
	want := append(append([]byte{}, buf...), buf...)
	wantFile(t, filepath.Join(backing, "direct"), want)
}

// TestHoldSyncs: while syncs are held, an fsync waits and writes nothing;
// released, it completes.
func TestHoldSyncs(t *testing.T) {
	backing, mnt, srv := mountT(t)
	f := openT(t, filepath.Join(mnt, "f"), os.O_CREATE|os.O_RDWR)
	_, err := f.Write([]byte("data"))
	must(t, err)
	srv.HoldSyncs()
	done := make(chan error, 1)
	go func() { done <- f.Sync() }()
	select {
	case <-srv.SyncHeld(): // the fsync reached the hold: it now waits there
	case <-time.After(10 * time.Second):
		t.Fatalf("fsync never reached the hold")
	}
	select {
	case err := <-done:
		t.Fatalf("fsync returned (%v) while syncs are held", err)
	default:
	}
	wantFile(t, filepath.Join(mnt, "f"), []byte("data")) // the file is usable meanwhile
	wantFile(t, filepath.Join(backing, "f"), []byte{})
	srv.ReleaseSyncs()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("fsync still waiting after ReleaseSyncs")
	}
	wantFile(t, filepath.Join(backing, "f"), []byte("data"))
}

// TestUnmountDiscards: a file system that goes away without a sync loses
// the held data, and only that. Directory operations were immediate.
func TestUnmountDiscards(t *testing.T) {
	backing, mnt, srv := mountT(t)
	must(t, os.Mkdir(filepath.Join(mnt, "d"), 0o755))
	f := openT(t, filepath.Join(mnt, "d", "f"), os.O_CREATE|os.O_RDWR)
	_, err := f.Write([]byte("synced."))
	must(t, err)
	must(t, f.Sync())
	_, err = f.Write([]byte("held"))
	must(t, err)
	must(t, f.Close())
	must(t, os.WriteFile(filepath.Join(mnt, "d", "never"), []byte("never synced"), 0o644))
	must(t, os.Rename(filepath.Join(mnt, "d", "never"), filepath.Join(mnt, "d", "renamed")))
	d := openT(t, filepath.Join(mnt, "d"), os.O_RDONLY)
	must(t, d.Sync()) // a directory fsync must work (the broker does it)
	must(t, d.Close())
	wantFile(t, filepath.Join(mnt, "d", "f"), []byte("synced.held"))

	if err := srv.Unmount(); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	wantFile(t, filepath.Join(backing, "d", "f"), []byte("synced."))
	wantFile(t, filepath.Join(backing, "d", "renamed"), []byte{})
}

// TestRemovedFileForgetsHeldData: held data of a deleted file must not turn
// up in a new file that gets the same backing inode number (the backing
// file system may or may not reuse one; the state must be gone either way).
func TestRemovedFileForgetsHeldData(t *testing.T) {
	backing, mnt, srv := mountT(t)
	fsys := srv.fsys
	held := func(name string) bool {
		st, err := os.Stat(filepath.Join(backing, name))
		must(t, err)
		in := fsys.peek(st.Sys().(*syscall.Stat_t).Ino)
		if in == nil {
			return false
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		return in.dirty
	}
	for i := range 20 {
		p := filepath.Join(mnt, fmt.Sprintf("f%d", i))
		must(t, os.WriteFile(p, []byte("stale"), 0o644))
		if !held(fmt.Sprintf("f%d", i)) {
			t.Fatalf("no held state for an unsynced file")
		}
		fst, err := os.Stat(filepath.Join(backing, fmt.Sprintf("f%d", i)))
		must(t, err)
		must(t, os.Remove(p))
		if fsys.peek(fst.Sys().(*syscall.Stat_t).Ino) != nil {
			t.Fatalf("state of a removed file is kept")
		}
		q := filepath.Join(mnt, fmt.Sprintf("g%d", i))
		must(t, os.WriteFile(q, nil, 0o644))
		wantFile(t, q, []byte{})
		must(t, os.WriteFile(p+".tmp", []byte("x"), 0o644))
		qst, err := os.Stat(filepath.Join(backing, fmt.Sprintf("g%d", i)))
		must(t, err)
		must(t, os.Rename(p+".tmp", q)) // replaces q
		if fsys.peek(qst.Sys().(*syscall.Stat_t).Ino) != nil {
			t.Fatalf("state of a replaced file is kept")
		}
		wantFile(t, q, []byte("x"))
		wantFile(t, filepath.Join(backing, fmt.Sprintf("g%d", i)), []byte{})
	}
}

// TestPowerCut kills a cutfs server process, as the end-to-end test does:
// the backing directory keeps exactly what was synced, even of files still
// open and being written.
func TestPowerCut(t *testing.T) {
	skipWithoutFUSE(t)
	backing, mnt := t.TempDir(), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CUTFS_TEST_BACKING="+backing, "CUTFS_TEST_MOUNT="+mnt)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = cmd.Wait()
		if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 3 {
			t.Skipf("FUSE mount refused here: %s", stderr.String())
		}
		t.Fatalf("server did not get ready: %q, stderr %s", line, stderr.String())
	}

	f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, err)
	defer f.Close()
	_, err = f.Write([]byte("synced"))
	must(t, err)
	must(t, f.Sync())
	_, err = f.Write(bytes.Repeat([]byte("held"), 1000))
	must(t, err)
	must(t, f.Truncate(3)) // held too

	must(t, cmd.Process.Kill())
	_ = cmd.Wait()
	if _, err := f.Write([]byte("after")); err == nil {
		t.Errorf("a write after the cut succeeded")
	}
	if err := f.Sync(); err == nil {
		t.Errorf("an fsync after the cut succeeded")
	}
	wantFile(t, filepath.Join(backing, "f"), []byte("synced"))
}

// TestOverlayModel runs random writes, truncates, fallocates and syncs on
// the overlay of a backing file with data in it, against a model of what
// the mount must show and what the backing file must hold. It needs no FUSE.
func TestOverlayModel(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 7))
		path := filepath.Join(t.TempDir(), "f")
		disk := make([]byte, rng.IntN(4*pageSize))
		for i := range disk {
			disk[i] = byte(rng.IntN(250) + 1)
		}
		must(t, os.WriteFile(path, disk, 0o644))
		fd, err := unix.Open(path, unix.O_RDWR, 0)
		must(t, err)
		view := append([]byte{}, disk...)
		var in inode
		var ops []string
		for step := range 200 {
			off := int64(rng.IntN(6 * pageSize))
			n := int64(rng.IntN(2*pageSize) + 1)
			switch k := rng.IntN(10); {
			case k < 4:
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(step%250 + 1)
				}
				ops = append(ops, fmt.Sprintf("write(%d,%d)", off, n))
				must(t, in.writeAt(fd, p, off))
				if grow := off + n - int64(len(view)); grow > 0 {
					view = append(view, make([]byte, grow)...)
				}
				copy(view[off:], p)
			case k < 6:
				ops = append(ops, fmt.Sprintf("truncate(%d)", off))
				must(t, in.truncate(fd, off))
				view = resize(view, off)
			case k < 8:
				mode := []uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
					unix.FALLOC_FL_ZERO_RANGE, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE}[rng.IntN(5)]
				ops = append(ops, fmt.Sprintf("fallocate(%#x,%d,%d)", mode, off, n))
				must(t, in.allocate(fd, off, n, mode))
				if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
					clear(view[min(off, int64(len(view))):min(off+n, int64(len(view)))])
				}
				if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && off+n > int64(len(view)) {
					view = resize(view, off+n)
				}
			default:
				ops = append(ops, "sync")
				must(t, in.sync(fd))
				disk = append(disk[:0], view...)
			}
			got := make([]byte, len(view)+pageSize)
			nr, err := in.readAt(fd, got, 0)
			must(t, err)
			if !bytes.Equal(got[:nr], view) {
				t.Fatalf("seed %d: after %v: mount shows %d bytes, want %d (first difference at %d)",
					seed, ops, nr, len(view), firstDiff(got[:nr], view))
			}
			if b := readFile(t, path); !bytes.Equal(b, disk) {
				t.Fatalf("seed %d: after %v: backing file has %d bytes, want %d (first difference at %d)",
					seed, ops, len(b), len(disk), firstDiff(b, disk))
			}
		}
		unix.Close(fd)
	}
}

func resize(b []byte, n int64) []byte {
	if n <= int64(len(b)) {
		return b[:n]
	}
	return append(b, make([]byte, n-int64(len(b)))...)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
