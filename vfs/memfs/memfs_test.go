package memfs

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"
)

// TestZerosCostNothing: a preallocated, zero-filled file (the WAL writes 64
// MiB of zeros per file) stores no pages; data written into it does, and
// reads back among the zeros.
func TestZerosCostNothing(t *testing.T) {
	m := New()
	f, err := m.OpenFile("/wal/00000001.wal", os.O_RDWR|os.O_CREATE, 0o644)
	if err == nil || !os.IsNotExist(err) {
		t.Fatalf("open under a missing directory: %v, want ENOENT", err)
	}
	if err := m.MkdirAll("/wal", 0o755); err != nil {
		t.Fatal(err)
	}
	if f, err = m.OpenFile("/wal/00000001.wal", os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < 64<<20; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			t.Fatal(err)
		}
	}
	in := f.(*file).in
	if n := len(in.pages); n != 0 {
		t.Fatalf("64 MiB of zeros stored %d pages", n)
	}
	if _, err := f.WriteAt([]byte("record"), 5<<20+pageSize-3); err != nil { // across two pages
		t.Fatal(err)
	}
	if n := len(in.pages); n != 2 {
		t.Fatalf("a 6-byte write across a page boundary stored %d pages, want 2", n)
	}
	got := make([]byte, 10)
	if _, err := f.ReadAt(got, 5<<20+pageSize-5); err != nil {
		t.Fatal(err)
	}
	if want := []byte("\x00\x00record\x00\x00"); !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if size, _ := f.Size(); size != 64<<20 {
		t.Fatalf("size %d, want 64 MiB", size)
	}
}

// TestConcurrentUse runs creates, writes, reads, renames, removals and
// listings from many goroutines at once; under -race it proves the locking.
func TestConcurrentUse(t *testing.T) {
	m := New()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				name := fmt.Sprintf("/d/g%d-%d", g, i)
				f, err := m.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					t.Error(err)
					return
				}
				want := []byte(name)
				if _, err := f.WriteAt(want, int64(i*100)); err != nil {
					t.Error(err)
				}
				if err := m.Rename(name, name+".done"); err != nil {
					t.Error(err)
				}
				got := make([]byte, len(want))
				if _, err := f.ReadAt(got, int64(i*100)); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: read %q %v", name, got, err)
				}
				if _, err := m.ReadDir("/d"); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					if err := m.Remove(name + ".done"); err != nil {
						t.Error(err)
					}
				}
				f.Close()
			}
		}()
	}
	wg.Wait()
	ents, err := m.ReadDir("/d")
	if err != nil || len(ents) != 8*25 {
		t.Fatalf("%d entries left (%v), want %d", len(ents), err, 8*25)
	}
}
