package crashfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"golang.org/x/sys/unix"
)

func TestCrashFSDropsUnsynced(t *testing.T) {
	dir := t.TempDir()
	c := New(vfs.OSFS{})
	name := filepath.Join(dir, "f")
	f, err := c.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("hello world"), 0)
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("HELLO"), 0)
	f.WriteAt([]byte(" and more"), 11)
	f.Truncate(3)
	if err := c.Crash(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, unix.EIO) {
		t.Fatalf("write after crash: %v", err)
	}
	b, _ := os.ReadFile(name)
	if string(b) != "hello world" {
		t.Fatalf("after crash: %q", b)
	}
}

// TestCrashFSKillAt: a killed process's file, writes and truncation stay, synced or not, and
// from the chosen operation on every operation fails.
func TestCrashFSKillAt(t *testing.T) {
	dir := t.TempDir()
	c := New(vfs.OSFS{})
	name := filepath.Join(dir, "f")
	f, err := c.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644) // op 1, its entry never synced
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("written"), 0); err != nil { // op 2, never synced
		t.Fatal(err)
	}
	if err := f.Truncate(4); err != nil { // op 3
		t.Fatal(err)
	}
	c.KillAt(4)
	if _, err := f.WriteAt([]byte("lost"), 0); !errors.Is(err, unix.EIO) { // op 4: killed
		t.Fatalf("write at the kill: %v", err)
	}
	if err := f.Datasync(); !errors.Is(err, unix.EIO) {
		t.Fatalf("sync after the kill: %v", err)
	}
	if b, err := os.ReadFile(name); err != nil || string(b) != "writ" {
		t.Fatalf("after the kill: %q, %v; want the unsynced \"writ\"", b, err)
	}
}

// TestCrashFSCrashAt counts mutating operations and cuts the power just
// before the chosen one: cleanly, or leaving the first half of that write.
func TestCrashFSCrashAt(t *testing.T) {
	for _, tear := range []bool{false, true} {
		t.Run(fmt.Sprintf("tear=%v", tear), func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, "f")
			c := New(vfs.OSFS{})
			f, err := c.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644) // op 1
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SyncDir(dir); err != nil { // op 2
				t.Fatal(err)
			}
			synced := bytes.Repeat([]byte("a"), 1024)
			if _, err := f.WriteAt(synced, 0); err != nil { // op 3
				t.Fatal(err)
			}
			if err := f.Datasync(); err != nil { // op 4
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("unsynced"), 0); err != nil { // op 5
				t.Fatal(err)
			}
			c.CrashAt(7, tear)
			if c.Ops() != 5 {
				t.Fatalf("%d operations counted, want 5", c.Ops())
			}
			if _, err := f.ReadAt(make([]byte, 4), 0); err != nil { // reads are not counted
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte("b"), 1024), 1024); err != nil { // op 6
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte("c"), 1024), 2048); !errors.Is(err, unix.EIO) { // op 7: the cut
				t.Fatalf("write at the crash point: %v", err)
			}
			if err := f.Datasync(); !errors.Is(err, unix.EIO) {
				t.Fatalf("sync after the crash: %v", err)
			}
			want := append([]byte(nil), synced...)
			if tear {
				// The unsynced ops 5 and 6 are undone; half of op 7 landed past a hole.
				want = append(want, make([]byte, 1024)...)
				want = append(want, bytes.Repeat([]byte("c"), 512)...)
			}
			if got, _ := os.ReadFile(name); !bytes.Equal(got, want) {
				t.Fatalf("after the cut: %d bytes %q..., want %d bytes", len(got), got[:min(len(got), 16)], len(want))
			}
		})
	}
}

// TestCrashFSDirectoryEntries: files and directories created, removed or
// renamed since their directory was last synced are taken back by a cut;
// synced changes stay.
func TestCrashFSDirectoryEntries(t *testing.T) {
	root := t.TempDir()
	at := func(name string) string { return filepath.Join(root, name) }
	write := func(c *FS, name, content string, sync bool) {
		t.Helper()
		f, err := c.OpenFile(at(name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte(content), 0); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := f.Datasync(); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	c := New(vfs.OSFS{})
	write(c, "kept", "durable", true)
	write(c, "doomed", "old", true)
	write(c, "replaced", "old target", true)
	write(c, "moved", "moved content", true)
	must(c.MkdirAll(at("dir/sub"), 0o755))
	write(c, "dir/sub/inner", "inner", true)
	must(c.MkdirAll(at("keepdir"), 0o755))
	write(c, "keepdir/old", "removed for good", true)
	for _, d := range []string{"", "dir", "dir/sub", "keepdir"} {
		must(c.SyncDir(at(d)))
	}

	// Changes in root, never synced: all taken back.
	write(c, "new", "data synced, entry not", true)
	must(c.Remove(at("doomed")))
	write(c, "moved", "later write, unsynced", false)
	must(c.Rename(at("moved"), at("replaced")))
	must(c.MkdirAll(at("fresh/deeper"), 0o755))
	write(c, "fresh/deeper/f", "x", true)
	must(c.SyncDir(at("fresh/deeper")))
	must(c.RemoveAll(at("dir")))
	// Changes in keepdir, synced: they stay.
	write(c, "keepdir/covered", "covered", true)
	must(c.Remove(at("keepdir/old")))
	must(c.SyncDir(at("keepdir")))

	must(c.Crash())
	want := map[string]string{
		"kept":            "durable",
		"doomed":          "old",
		"moved":           "moved content",
		"replaced":        "old target",
		"dir/sub/inner":   "inner",
		"keepdir/covered": "covered",
	}
	got := map[string]string{}
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			rel, _ := filepath.Rel(root, path)
			got[rel] = string(b)
		}
		return nil
	})
	if !maps.Equal(got, want) {
		t.Fatalf("after the cut:\n got %q\nwant %q", got, want)
	}
	if _, err := os.Stat(at("fresh")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unsynced directory survived the cut: %v", err)
	}
}
