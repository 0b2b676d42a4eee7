package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestOSFSRoundTrip(t *testing.T) {
	dir := t.TempDir()
	var fsys FS = OSFS{}
	if err := fsys.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "a", "b", "f")
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello world"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("WORLD"), 6); err != nil {
		t.Fatal(err)
	}
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	if sz, err := f.Size(); err != nil || sz != 11 {
		t.Fatalf("size %d %v", sz, err)
	}
	buf := make([]byte, 5)
	if _, err := f.ReadAt(buf, 6); err != nil || string(buf) != "WORLD" {
		t.Fatalf("read %q %v", buf, err)
	}
	if n, err := f.ReadAt(make([]byte, 10), 6); err != io.EOF || n != 5 {
		t.Fatalf("short read: %d %v", n, err)
	}
	if err := f.Truncate(5); err != nil {
		t.Fatal(err)
	}
	if sz, _ := f.Size(); sz != 5 {
		t.Fatalf("size after truncate %d", sz)
	}
	if err := fsys.SyncDir(filepath.Dir(name)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// os.ErrClosed, not a storage error: the engine tells a read racing a
	// Close from a failing disk by it.
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after close: %v, want os.ErrClosed", err)
	}
	if _, err := f.WriteAt(buf, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write after close: %v, want os.ErrClosed", err)
	}
	if err := f.Datasync(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("datasync after close: %v, want os.ErrClosed", err)
	}
	if err := fsys.Rename(name, name+"2"); err != nil {
		t.Fatal(err)
	}
	ents, err := fsys.ReadDir(filepath.Dir(name))
	if err != nil || len(ents) != 1 || ents[0].Name() != "f2" {
		t.Fatalf("readdir %v %v", ents, err)
	}
	if err := fsys.Remove(name + "2"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.RemoveAll(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
}

// TestOSFSWriteVAt: more buffers than one pwritev takes, back to back from an offset.
func TestOSFSWriteVAt(t *testing.T) {
	f, err := OSFS{}.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bufs [][]byte
	var want []byte
	for i := 0; i < 2*maxIOV+5; i++ {
		b := []byte{byte(i), byte(i >> 8), 'x'}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	n, err := WriteVAt(f, bufs, 7)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("wrote %d of %d: %v", n, len(want), err)
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 7); err != nil || string(got) != string(want) {
		t.Fatalf("read back differs: %v", err)
	}
}
