package uring

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
	if _, err := f.ReadAt(buf, 0); err == nil {
		t.Fatal("read after close succeeded")
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

func TestFaultFS(t *testing.T) {
	dir := t.TempDir()
	ffs := NewFaultFS(OSFS{})
	f, err := ffs.OpenFile(filepath.Join(dir, "x.log"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	ffs.FailNth(FaultWrite, 2, unix.ENOSPC)
	if _, err := f.WriteAt([]byte("aaaa"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("bbbb"), 4); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	if _, err := f.WriteAt([]byte("cccc"), 4); err != nil {
		t.Fatalf("one-shot fault repeated: %v", err)
	}

	ffs.FailFrom(FaultSync, 1, unix.EIO)
	for i := 0; i < 3; i++ {
		if err := f.Datasync(); !errors.Is(err, unix.EIO) {
			t.Fatalf("sync %d: want EIO, got %v", i, err)
		}
	}
	ffs.Clear()
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	if got := ffs.Failed(FaultSync); got != 3 {
		t.Fatalf("failed syncs %d", got)
	}

	ffs.SetTornWrites(true)
	ffs.FailNth(FaultWrite, 1, unix.EIO)
	if n, err := f.WriteAt([]byte("dddddddd"), 8); err == nil || n != 4 {
		t.Fatalf("torn write: %d %v", n, err)
	}
	got := make([]byte, 12)
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, []byte("aaaaccccdddd")) {
		t.Fatalf("content %q %v", got, err)
	}

	ffs.SetFilter(".index")
	ffs.FailFrom(FaultWrite, 1, unix.EIO)
	if _, err := f.WriteAt([]byte("e"), 0); err != nil {
		t.Fatalf("filtered file failed: %v", err)
	}
}
