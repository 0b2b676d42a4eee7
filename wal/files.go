package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringtail/ringtail/vfs"
)

func (w *Log) path(n uint64) string {
	return filepath.Join(w.opts.Dir, fmt.Sprintf("%020d%s", n, walSuffix))
}

func (w *Log) listFiles() ([]uint64, error) {
	ents, err := w.fs.ReadDir(w.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var ns []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, walSuffix) || len(name) != 20+len(walSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, walSuffix), 10, 64)
		if err == nil {
			ns = append(ns, n)
		}
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	return ns, nil
}

// Release says every record before pos is no longer needed (the caller made
// its contents durable elsewhere): files wholly before pos.File are reused or
// removed.
func (w *Log) Release(pos Position) {
	files, err := w.listFiles()
	if err != nil {
		w.log.Warn("wal: release: listing files", "err", err)
		return
	}
	w.mu.Lock()
	if pos.File > w.released.File || pos.File == w.released.File && pos.Offset > w.released.Offset {
		w.released = pos
		w.notified = false
	}
	have := make(map[uint64]bool, len(w.spares))
	for _, n := range w.spares {
		have[n] = true
	}
	for _, n := range files {
		if n < pos.File && !have[n] {
			w.spares = append(w.spares, n)
		}
	}
	sort.Slice(w.spares, func(i, j int) bool { return w.spares[i] < w.spares[j] })
	var drop []uint64
	for len(w.spares) > walSpareFiles {
		drop = append(drop, w.spares[0])
		w.spares = w.spares[1:]
	}
	w.mu.Unlock()
	for _, n := range drop {
		if err := w.fs.Remove(w.path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("wal: removing a recycled file", "err", err)
		} else {
			w.log.Debug("wal: removed a file beyond the spares", "file", n)
		}
	}
}

// switchTo makes file n current: a spare renamed, or a new preallocated one.
func (w *Log) switchTo(n uint64) error {
	path := w.path(n)
	w.mu.Lock()
	var spare uint64
	haveSpare := len(w.spares) > 0
	if haveSpare {
		spare = w.spares[0]
		w.spares = w.spares[1:]
	}
	usePrep := false
	if !haveSpare {
		// A file the preparer is filling is closer to ready than one we
		// would start now.
		for w.prepRunning {
			w.prepCond.Wait()
		}
		usePrep, w.prepReady = w.prepReady, false
	}
	w.mu.Unlock()
	var f vfs.File
	var err error
	if usePrep {
		if err = w.fs.Rename(filepath.Join(w.opts.Dir, walPrepName), path); err == nil {
			f, err = w.openRecycled(path)
		}
		if err == nil {
			w.prepUsed.Add(1)
		}
		if err != nil {
			w.log.Warn("wal: using the prepared file failed, creating a new one", "err", err)
			_ = w.fs.Remove(path)
			f = nil
		}
	} else if haveSpare {
		if err = w.fs.Rename(w.path(spare), path); err == nil {
			f, err = w.openRecycled(path)
		}
		if err != nil {
			w.log.Warn("wal: recycling failed, creating a new file", "err", err)
			_ = w.fs.Remove(path)
			f = nil
		}
	}
	if f == nil {
		if f, err = w.create(path); err != nil {
			_ = w.fs.Remove(path)
			return err
		}
	}
	if err := w.fs.SyncDir(w.opts.Dir); err != nil {
		f.Close()
		return err
	}
	for _, l := range w.lanes {
		if err := l.dev.use(f, path); err != nil {
			f.Close()
			return err
		}
	}
	if w.cur != nil {
		w.cur.Close()
	}
	w.mu.Lock()
	w.cur, w.file, w.pos = f, n, 0
	w.mu.Unlock()
	return nil
}

// openRecycled opens a renamed spare or prepared file and checks its size.
func (w *Log) openRecycled(path string) (vfs.File, error) {
	f, err := w.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	size, err := f.Size()
	if err == nil && size != w.opts.FileBytes {
		err = fmt.Errorf("recycled wal file %s has %d bytes, want %d", path, size, w.opts.FileBytes)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// wantPreparedLocked asks the preparer for a fresh file when the writer
// would otherwise have to create its next one. w.mu held.
func (w *Log) wantPreparedLocked() {
	if len(w.spares) > 0 || w.prepReady || w.prepRunning || w.prepWant || w.prepErrs >= 3 {
		return
	}
	w.prepWant = true
	w.prepCond.Broadcast()
}

// prepare is the preparer goroutine: it zero-fills walPrepName on request.
func (w *Log) prepare() {
	defer close(w.prepExited)
	path := filepath.Join(w.opts.Dir, walPrepName)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for !w.prepWant && !w.closing {
			w.prepCond.Wait()
		}
		if w.closing {
			return
		}
		w.prepWant, w.prepRunning = false, true
		w.mu.Unlock()
		start := time.Now()
		f, err := w.fill(path, walPrepChunk, func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.closing
		})
		if err == nil {
			err = f.Close()
		}
		if err != nil {
			_ = w.fs.Remove(path)
		}
		w.mu.Lock()
		w.prepRunning = false
		if err != nil {
			w.prepErrs++
			if !w.closing {
				w.log.Warn("wal: preparing the next file failed; the writer creates it when needed", "err", err)
			}
		} else {
			w.prepErrs = 0
			w.prepReady = true
			w.log.Debug("wal: next file prepared", "bytes", w.opts.FileBytes, "took", time.Since(start))
		}
		w.prepCond.Broadcast()
	}
}

var errWALPrepStopped = errors.New("wal: closing")

// create makes a zero-filled file of FileBytes and syncs it.
func (w *Log) create(path string) (vfs.File, error) {
	return w.fill(path, w.opts.FileBytes, nil)
}

// fill makes a zero-filled file of FileBytes at path, syncing after every
// syncEvery bytes and at the end; stop (when non-nil) is asked between
// chunks and ends the fill early with an error.
func (w *Log) fill(path string, syncEvery int64, stop func() bool) (vfs.File, error) {
	f, err := w.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	zero := make([]byte, 1<<20)
	unsynced := int64(0)
	for off := int64(0); off < w.opts.FileBytes; off += int64(len(zero)) {
		if stop != nil && stop() {
			f.Close()
			return nil, errWALPrepStopped
		}
		chunk := zero
		if rest := w.opts.FileBytes - off; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		if _, err := f.WriteAt(chunk, off); err != nil {
			f.Close()
			return nil, err
		}
		if unsynced += int64(len(chunk)); unsynced >= syncEvery && off+int64(len(chunk)) < w.opts.FileBytes {
			if err := f.Datasync(); err != nil {
				f.Close()
				return nil, err
			}
			unsynced = 0
		}
	}
	if err := f.Datasync(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
