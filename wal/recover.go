package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ringtail/ringtail/uring"
	"github.com/ringtail/ringtail/vfs"
)

// recover replays from, removes files after the last one holding live
// records, and puts the writer at offset 0 of the following file.
func (w *Log) recover(from Position, replay func(uint64, []byte) error) error {
	files, err := w.listFiles()
	if err != nil {
		return err
	}
	exists := make(map[uint64]bool, len(files))
	for _, n := range files {
		exists[n] = true
	}
	start := time.Now()
	file, pos, seq := from.File, from.Offset, from.Seq
	last := from.File
	replayed := 0
	var r *walReader
	defer func() {
		if r != nil {
			r.f.Close()
		}
	}()
	openReader := func(n uint64) error {
		if r != nil {
			r.f.Close()
			r = nil
		}
		f, err := w.fs.OpenFile(w.path(n), os.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return fmt.Errorf("wal: %w", err)
		}
		r = &walReader{f: f, size: size}
		return nil
	}
	if exists[file] {
		if err := openReader(file); err != nil {
			return err
		}
	}
	for r != nil {
		kind, payload, size, err := r.record(pos, seq)
		if err != nil {
			return err
		}
		if kind != 0 {
			if kind == walKindData {
				if err := replay(seq, payload); err != nil {
					return err
				}
				seq++
				replayed++
			}
			pos += int64(size)
			last = file
			continue
		}
		if rem := uring.BlockSize - pos%uring.BlockSize; rem < walHeaderSize && pos+rem <= r.size {
			pos += rem
			continue
		}
		// Try the start of the next file.
		if !exists[file+1] {
			break
		}
		if err := openReader(file + 1); err != nil {
			return err
		}
		if k, _, _, err := r.record(0, seq); err != nil {
			return err
		} else if k == 0 {
			break
		}
		file, pos = file+1, 0
	}
	// Files past the last live one hold only a torn cycle or stale data.
	removed := false
	if err := w.fs.Remove(filepath.Join(w.opts.Dir, walPrepName)); err == nil {
		removed = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wal: %w", err)
	}
	for _, n := range files {
		switch {
		case n > last:
			if err := w.fs.Remove(w.path(n)); err != nil {
				return fmt.Errorf("wal: %w", err)
			}
			removed = true
		case n < from.File:
			w.spares = append(w.spares, n)
		}
	}
	for len(w.spares) > walSpareFiles {
		if err := w.fs.Remove(w.path(w.spares[0])); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		w.spares = w.spares[1:]
		removed = true
	}
	if removed {
		if err := w.fs.SyncDir(w.opts.Dir); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
	}
	w.file, w.pos, w.seq = last+1, 0, seq
	w.committed = Position{File: w.file, Offset: 0, Seq: seq}
	w.released = from
	w.log.Info("wal: recovered", "dir", w.opts.Dir, "from_file", from.File, "from_offset", from.Offset,
		"records", replayed, "next_seq", seq, "took", time.Since(start))
	return nil
}

// walReader reads records through a window buffer.
type walReader struct {
	f      vfs.File
	size   int64
	buf    []byte
	wstart int64
	wlen   int
}

const walReadWindow = 1 << 20

// bytes returns n bytes at pos, or nil when the file ends first.
func (r *walReader) bytes(pos int64, n int) ([]byte, error) {
	if pos < 0 || pos+int64(n) > r.size {
		return nil, nil
	}
	if pos >= r.wstart && pos+int64(n) <= r.wstart+int64(r.wlen) {
		o := pos - r.wstart
		return r.buf[o : o+int64(n)], nil
	}
	want := walReadWindow
	if n > want {
		want = n
	}
	if rest := r.size - pos; int64(want) > rest {
		want = int(rest)
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got, err := r.f.ReadAt(r.buf, pos)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("wal: read: %w", err)
	}
	r.wstart, r.wlen = pos, got
	if got < n {
		return nil, nil
	}
	return r.buf[:n], nil
}

// record parses the record at pos expecting sequence number seq. kind 0
// means no live record is there.
func (r *walReader) record(pos int64, seq uint64) (kind byte, payload []byte, size int, err error) {
	h, err := r.bytes(pos, walHeaderSize)
	if err != nil || h == nil {
		return 0, nil, 0, err
	}
	if binary.LittleEndian.Uint32(h[0:]) != walMagic || binary.LittleEndian.Uint64(h[8:]) != seq {
		return 0, nil, 0, nil
	}
	n := int(binary.LittleEndian.Uint32(h[16:]))
	kind = h[20]
	want := binary.LittleEndian.Uint32(h[4:])
	size = walRecordSize(n)
	switch kind {
	case walKindPad:
		if crc32.Checksum(h[8:walHeaderSize], castagnoli) != want || pos+int64(size) > r.size {
			return 0, nil, 0, nil
		}
		return kind, nil, size, nil
	case walKindData:
		if pos+int64(walHeaderSize+n) > r.size {
			return 0, nil, 0, nil
		}
		crc := crc32.Update(0, castagnoli, h[8:walHeaderSize])
		whole, err := r.bytes(pos, walHeaderSize+n)
		if err != nil || whole == nil {
			return 0, nil, 0, err
		}
		if crc32.Update(crc, castagnoli, whole[walHeaderSize:]) != want {
			return 0, nil, 0, nil
		}
		return kind, append([]byte(nil), whole[walHeaderSize:]...), size, nil
	}
	return 0, nil, 0, nil
}
