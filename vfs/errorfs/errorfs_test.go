package errorfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"golang.org/x/sys/unix"
)

func TestFaultFS(t *testing.T) {
	dir := t.TempDir()
	ffs := New(vfs.OSFS{})
	f, err := ffs.OpenFile(filepath.Join(dir, "x.log"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	ffs.FailNth(OpWrite, 2, unix.ENOSPC)
	if _, err := f.WriteAt([]byte("aaaa"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("bbbb"), 4); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	if _, err := f.WriteAt([]byte("cccc"), 4); err != nil {
		t.Fatalf("one-shot fault repeated: %v", err)
	}

	ffs.FailFrom(OpSync, 1, unix.EIO)
	for i := 0; i < 3; i++ {
		if err := f.Datasync(); !errors.Is(err, unix.EIO) {
			t.Fatalf("sync %d: want EIO, got %v", i, err)
		}
	}
	ffs.Clear()
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	if got := ffs.Failed(OpSync); got != 3 {
		t.Fatalf("failed syncs %d", got)
	}

	ffs.SetTornWrites(true)
	ffs.FailNth(OpWrite, 1, unix.EIO)
	if n, err := f.WriteAt([]byte("dddddddd"), 8); err == nil || n != 4 {
		t.Fatalf("torn write: %d %v", n, err)
	}
	got := make([]byte, 12)
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, []byte("aaaaccccdddd")) {
		t.Fatalf("content %q %v", got, err)
	}

	ffs.SetFilter(".index")
	ffs.FailFrom(OpWrite, 1, unix.EIO)
	if _, err := f.WriteAt([]byte("e"), 0); err != nil {
		t.Fatalf("filtered file failed: %v", err)
	}
}
