package memfs_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/memfs"
)

// env is one file system under test, with the handles a sequence opened.
type env struct {
	fsys  vfs.FS
	root  string
	files map[string]vfs.File
}

func (e *env) path(name string) string { return filepath.Join(e.root, name) }

// step is one operation; it returns what it observed (compared between the
// file systems) and its error (compared by class, see errClass).
type step struct {
	what string
	do   func(e *env) (string, error)
}

func mkdirAll(dir string) step {
	return step{"MkdirAll " + dir, func(e *env) (string, error) { return "", e.fsys.MkdirAll(e.path(dir), 0o755) }}
}

func open(key, name string, flag int) step {
	return step{fmt.Sprintf("OpenFile %s %#x as %s", name, flag, key), func(e *env) (string, error) {
		f, err := e.fsys.OpenFile(e.path(name), flag, 0o644)
		if err != nil {
			return "", err
		}
		if want := e.path(name); f.Name() != want {
			return "", fmt.Errorf("Name() = %q, want %q", f.Name(), want)
		}
		e.files[key] = f
		return "", nil
	}}
}

func writeAt(key, data string, off int64) step {
	return step{fmt.Sprintf("WriteAt %s %q @%d", key, data, off), func(e *env) (string, error) {
		n, err := e.files[key].WriteAt([]byte(data), off)
		return fmt.Sprint(n), err
	}}
}

func readAt(key string, n int, off int64) step {
	return step{fmt.Sprintf("ReadAt %s %d @%d", key, n, off), func(e *env) (string, error) {
		buf := make([]byte, n)
		got, err := e.files[key].ReadAt(buf, off)
		return fmt.Sprintf("%d %q", got, buf[:max(got, 0)]), err
	}}
}

func fileOp(op, key string) step {
	return step{op + " " + key, func(e *env) (string, error) {
		f := e.files[key]
		switch op {
		case "Size":
			n, err := f.Size()
			return fmt.Sprint(n), err
		case "Datasync":
			return "", f.Datasync()
		case "Close":
			return "", f.Close()
		}
		panic(op)
	}}
}

func truncate(key string, size int64) step {
	return step{fmt.Sprintf("Truncate %s %d", key, size), func(e *env) (string, error) { return "", e.files[key].Truncate(size) }}
}

func readDir(dir string) step {
	return step{"ReadDir " + dir, func(e *env) (string, error) {
		ents, err := e.fsys.ReadDir(e.path(dir))
		var out []string
		for _, ent := range ents {
			info, ierr := ent.Info()
			if ierr != nil {
				return "", ierr
			}
			if ent.IsDir() != info.IsDir() || ent.Type() != info.Mode().Type() {
				return "", fmt.Errorf("entry %s: IsDir %v Type %v, Info says %v %v", ent.Name(), ent.IsDir(), ent.Type(), info.IsDir(), info.Mode().Type())
			}
			if ent.IsDir() {
				out = append(out, ent.Name()+"/")
			} else {
				out = append(out, fmt.Sprintf("%s:%d", ent.Name(), info.Size()))
			}
		}
		return strings.Join(out, " "), err
	}}
}

func nameOp(op, name string) step {
	return step{op + " " + name, func(e *env) (string, error) {
		switch op {
		case "Remove":
			return "", e.fsys.Remove(e.path(name))
		case "RemoveAll":
			return "", e.fsys.RemoveAll(e.path(name))
		case "SyncDir":
			return "", e.fsys.SyncDir(e.path(name))
		}
		panic(op)
	}}
}

func rename(from, to string) step {
	return step{"Rename " + from + " " + to, func(e *env) (string, error) {
		return "", e.fsys.Rename(e.path(from), e.path(to))
	}}
}

// errClass names the error's type and every sentinel and errno it matches
// with errors.Is: what callers may rely on. Messages (which hold paths) are
// not compared.
func errClass(err error) string {
	if err == nil {
		return "ok"
	}
	var parts []string
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &le):
		parts = append(parts, "LinkError")
	case errors.As(err, &pe):
		parts = append(parts, "PathError")
	default:
		parts = append(parts, fmt.Sprintf("%T", err))
	}
	for _, s := range []struct {
		name string
		err  error
	}{
		{"ErrNotExist", os.ErrNotExist}, {"ErrExist", os.ErrExist}, {"ErrClosed", os.ErrClosed}, {"EOF", io.EOF},
		{"ENOENT", syscall.ENOENT}, {"EEXIST", syscall.EEXIST}, {"EISDIR", syscall.EISDIR}, {"ENOTDIR", syscall.ENOTDIR},
		{"ENOTEMPTY", syscall.ENOTEMPTY}, {"EBADF", syscall.EBADF}, {"EINVAL", syscall.EINVAL}, {"EBUSY", syscall.EBUSY},
	} {
		if errors.Is(err, s.err) {
			parts = append(parts, s.name)
		}
	}
	return strings.Join(parts, ",")
}

// sequence is the operation sequence both file systems run: every flag,
// error and corner the engine or a later test may meet.
var sequence = []step{
	mkdirAll("a/b"),
	mkdirAll("a/b"),
	open("x", "a/b/f", os.O_RDWR),
	open("x", "nope/f", os.O_RDWR|os.O_CREATE),
	open("f", "a/b/f", os.O_RDWR|os.O_CREATE|os.O_EXCL),
	open("x", "a/b/f", os.O_RDWR|os.O_CREATE|os.O_EXCL),
	writeAt("f", "hello world", 0),
	writeAt("f", "WORLD", 6),
	writeAt("f", "!", 20), // a hole of zeros before it
	fileOp("Size", "f"),
	readAt("f", 21, 0),
	readAt("f", 10, 15), // short: EOF after 6 bytes
	readAt("f", 4, 100),
	readAt("f", 0, 100),
	writeAt("f", "x", -1),
	readAt("f", 1, -1),
	truncate("f", 5),
	fileOp("Size", "f"),
	readAt("f", 10, 0),
	truncate("f", 8195), // across pages
	readAt("f", 4, 4),
	readAt("f", 3, 8192),
	truncate("f", 3),
	writeAt("f", "Z", 4), // the bytes cut off must not come back
	readAt("f", 5, 0),
	truncate("f", -1),
	fileOp("Datasync", "f"),
	writeAt("f", strings.Repeat("\x00", 10000), 0), // zeros over data, then a tail of zeros
	writeAt("f", "mid", 5000),
	readAt("f", 6, 4998),
	fileOp("Size", "f"),
	truncate("f", 11),
	writeAt("f", "hello world", 0),

	open("r", "a/b/f", os.O_RDONLY),
	writeAt("r", "no", 0),
	truncate("r", 1),
	readAt("r", 5, 0),
	fileOp("Datasync", "r"),
	open("w", "a/b/f", os.O_WRONLY),
	readAt("w", 1, 0),
	writeAt("w", "J", 0),
	readAt("r", 5, 0), // every handle sees the file's one content
	open("d", "a/b", os.O_RDONLY),
	readAt("d", 1, 0),
	fileOp("Close", "d"),
	open("x", "a/b", os.O_RDWR),
	open("x", "a/b", os.O_RDONLY|os.O_CREATE),
	open("x", "a/b/f/x", os.O_RDWR|os.O_CREATE),
	mkdirAll("a/b/f/x"),
	mkdirAll("a/b/f"),
	readDir("a/b"),
	readDir("a"),
	readDir("a/b/f"),
	readDir("nope"),
	nameOp("SyncDir", "a/b"),
	nameOp("SyncDir", "nope"),

	rename("a/b/f", "a/b/g"),
	readDir("a/b"),
	writeAt("f", "again", 0), // a handle follows its file through a rename
	open("g", "a/b/g", os.O_RDWR),
	readAt("g", 11, 0),
	rename("a/b/f", "a/b/f2"),
	rename("a/b/g", "nope/g"),
	open("h", "a/b/h", os.O_RDWR|os.O_CREATE),
	writeAt("h", "new", 0),
	rename("a/b/h", "a/b/g"), // replaces g; handles on the old g keep its content
	readAt("g", 11, 0),
	open("g2", "a/b/g", os.O_RDONLY),
	readAt("g2", 11, 0),
	readDir("a/b"),
	rename("a/b/g", "a"),
	rename("a/b", "a/b/c"),
	mkdirAll("a/e"),
	rename("a/e", "a/b/g"),
	rename("a/b/g", "a/b/g"),
	open("t", "a/b/g", os.O_RDWR|os.O_TRUNC),
	fileOp("Size", "h"),
	fileOp("Size", "t"),

	nameOp("Remove", "a/b"),
	nameOp("Remove", "a/b/nope"),
	nameOp("Remove", "a/b/g"),
	writeAt("h", "alive", 0), // an unlinked file's handles still work
	readAt("h", 5, 0),
	nameOp("Remove", "a/e"),
	readDir("a"),
	fileOp("Close", "f"),
	fileOp("Close", "f"),
	fileOp("Size", "f"),
	fileOp("Datasync", "f"),
	readAt("f", 1, 0),
	writeAt("f", "x", 0),
	truncate("f", 0),
	nameOp("RemoveAll", "a/b/nope"),
	nameOp("RemoveAll", "a/nope/deeper"),
	nameOp("RemoveAll", "a"),
	readDir("."),
	nameOp("RemoveAll", "a"),
	open("x", "a/b/f", os.O_RDONLY),
}

// TestConformsToOSFS runs the same sequence on vfs.OSFS (a temporary
// directory) and on memfs, and requires the same observations and the same
// error classes at every step.
func TestConformsToOSFS(t *testing.T) {
	run := func(fsys vfs.FS, root string) []string {
		e := &env{fsys: fsys, root: root, files: map[string]vfs.File{}}
		out := make([]string, len(sequence))
		for i, s := range sequence {
			got, err := s.do(e)
			out[i] = got + " | " + errClass(err)
		}
		for _, f := range e.files {
			f.Close()
		}
		return out
	}
	osOut := run(vfs.OSFS{}, t.TempDir())
	mem := memfs.New()
	const memRoot = "/srv/test"
	if err := mem.MkdirAll(memRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	memOut := run(mem, memRoot)
	for i, s := range sequence {
		if osOut[i] != memOut[i] {
			t.Errorf("step %d %s:\n  OSFS:  %s\n  memfs: %s", i, s.what, osOut[i], memOut[i])
		} else {
			t.Logf("step %d %s: %s", i, s.what, osOut[i])
		}
	}
}
