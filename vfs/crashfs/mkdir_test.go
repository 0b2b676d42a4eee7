package crashfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtail/ringtail/vfs"
)

// TestMkdirAllDurable: directories it creates survive a power cut (their
// parents are synced); the same directories made by a bare MkdirAll do not.
func TestMkdirAllDurable(t *testing.T) {
	for _, durable := range []bool{true, false} {
		root := t.TempDir()
		dir := filepath.Join(root, "data", "logs", "wal")
		c := New(vfs.OSFS{})
		mkdir := c.MkdirAll
		if durable {
			mkdir = func(d string, perm os.FileMode) error { return vfs.MkdirAllDurable(c, d, perm) }
		}
		if err := mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := mkdir(dir, 0o755); err != nil { // already there: nothing to do
			t.Fatal(err)
		}
		if err := c.Crash(); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(dir)
		if durable && err != nil {
			t.Fatalf("MkdirAllDurable: %s gone after a power cut: %v", dir, err)
		}
		if !durable && err == nil {
			t.Fatalf("a bare MkdirAll survived a power cut: CrashFS does not model directory entries")
		}
	}
}
