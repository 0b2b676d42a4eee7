package engine

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
)

// File name suffixes inside a partition directory.
const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	metadataFile    = "partition.metadata"
)

// indexEntry says that the batch with base offset offset starts at pos.
type indexEntry struct {
	offset int64
	pos    int64
}

// timeEntry says that every batch before pos (whose base offset is offset)
// has a max timestamp <= ts.
type timeEntry struct {
	ts     int64
	offset int64
	pos    int64
}

// segment is one <base>.log file with its sparse indexes kept in memory.
// Every field is guarded by the owning partition's mu; a sealed segment
// (not the active one) no longer changes, except by a TruncateTo into it
// (it becomes the active one again); a rollback after a storage error never
// reaches below the durable end.
type segment struct {
	base int64
	path string // of the .log file
	file vfs.File

	size int64 // bytes of whole batches in the file
	end  int64 // offset after the last batch (== base when empty)

	index      []indexEntry
	times      []timeEntry
	sinceIndex int // bytes appended since the last index entry

	lastPos int64  // position of the last batch, -1 when none: what a producer snapshot names
	lastCRC uint32 // that batch's CRC-32C

	maxTs       int64 // largest batch max timestamp, -1 when none
	maxTsOffset int64 // last offset of that batch
	firstTs     int64 // the first batch's max timestamp, -1 when none: segment.ms counts from it

	// deleteHorizon: the earliest delete horizon of a batch here with tombstones a cleaning
	// removes once it has passed (pendingHorizon), noHorizon when none; what the cleaner's
	// planner needs when nothing is dirty. Known (horizonKnown) for a segment whose every
	// header was observed (appended, scanned by recovery, written by the cleaner), not for one
	// recovery loaded from its index files: the cleaner reads its headers once when it needs
	// the horizon (learnHorizons).
	deleteHorizon int64
	horizonKnown  bool

	indexed bool // .index/.timeindex/.txnindex files written (sealed and durable)

	aborted   []AbortedTxn // aborted transactions whose marker lies here, by marker offset (txn.go)
	txnLoaded bool         // aborted came from the .txnindex file (recovery)

	// Write-behind: bytes before wbFrom were handed to the kernel's
	// writeback by the checkpointer; wbAsked: it has been asked to do more.
	wbFrom  int64
	wbAsked bool

	// Deferred writes (flushLocked): the last unwrittenBytes of size are appends not in the
	// file yet, the buffers they arrived in, in order. Only the active segment has any.
	unwritten      [][]byte
	unwrittenBytes int64
}

// written is how much of the segment is in the file.
func (s *segment) written() int64 { return s.size - s.unwrittenBytes }

// unwrittenBase is the offset of the first deferred append (each starts with a batch
// header, whose first field is its base offset). s.unwrittenBytes > 0.
func (s *segment) unwrittenBase() int64 {
	return int64(binary.BigEndian.Uint64(s.unwritten[0]))
}

// keepUnwritten drops the deferred bytes that lie beyond size after size was lowered (a
// rollback or a cut); written was the file's share before.
func (s *segment) keepUnwritten(written int64) {
	keep := s.size - written
	if keep <= 0 {
		clear(s.unwritten)
		s.unwritten, s.unwrittenBytes = s.unwritten[:0], 0
		return
	}
	var n int64
	for i, b := range s.unwritten {
		if n+int64(len(b)) >= keep {
			s.unwritten[i] = b[:keep-n]
			clear(s.unwritten[i+1:])
			s.unwritten = s.unwritten[:i+1]
			break
		}
		n += int64(len(b))
	}
	s.unwrittenBytes = keep
}

func segmentName(dir string, base int64, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, suffix))
}

// parseSegmentName returns the base offset of a "<20 digits>.log" name.
func parseSegmentName(name string) (int64, bool) {
	if !strings.HasSuffix(name, logSuffix) {
		return 0, false
	}
	digits := strings.TrimSuffix(name, logSuffix)
	if len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || base < 0 {
		return 0, false
	}
	return base, true
}

func newSegment(fsys vfs.FS, dir string, base int64) (*segment, error) {
	path := segmentName(dir, base, logSuffix)
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &segment{base: base, path: path, file: f, end: base, lastPos: -1, maxTs: -1, maxTsOffset: -1, firstTs: -1,
		deleteHorizon: noHorizon, horizonKnown: true}, nil
}

// observe records that the batch h was stored at pos.
func (s *segment) observe(h batch.Header, pos int64, interval int) {
	if len(s.index) == 0 || s.sinceIndex >= interval {
		s.index = append(s.index, indexEntry{offset: h.BaseOffset, pos: pos})
		if s.maxTs >= 0 && (len(s.times) == 0 || s.maxTs > s.times[len(s.times)-1].ts) {
			s.times = append(s.times, timeEntry{ts: s.maxTs, offset: h.BaseOffset, pos: pos})
		}
		s.sinceIndex = 0
	}
	s.sinceIndex += h.Size()
	if pos == 0 {
		s.firstTs = h.MaxTimestamp
	}
	if h.MaxTimestamp > s.maxTs {
		s.maxTs = h.MaxTimestamp
		s.maxTsOffset = h.LastOffset()
	}
	if hz, ok := pendingHorizon(h); ok {
		s.deleteHorizon = min(s.deleteHorizon, hz)
	}
	s.size = pos + int64(h.Size())
	s.end = h.LastOffset() + 1
	s.lastPos, s.lastCRC = pos, h.CRC
}

// reset forgets the in-memory index, before a rescan.
func (s *segment) reset() {
	s.size, s.end, s.firstTs, s.lastPos = 0, s.base, -1, -1
	s.keepUnwritten(0)
	s.index, s.times, s.sinceIndex = nil, nil, 0
	s.maxTs, s.maxTsOffset = -1, -1
	s.deleteHorizon, s.horizonKnown = noHorizon, true
	s.aborted, s.txnLoaded = nil, false
}

// lookup returns the position of the last indexed batch whose base offset
// is <= offset (0 when none).
func (s *segment) lookup(offset int64) int64 {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].offset > offset })
	if i == 0 {
		return 0
	}
	return s.index[i-1].pos
}

// timeLookup returns a position from which a forward scan finds the first
// batch whose max timestamp is >= ts.
func (s *segment) timeLookup(ts int64) int64 {
	i := sort.Search(len(s.times), func(i int) bool { return s.times[i].ts >= ts })
	if i == 0 {
		return 0
	}
	return s.times[i-1].pos
}

// writeIndexFiles stores the sparse indexes in Kafka's formats: .index
// entries are (int32 offset-base, int32 position), .timeindex entries are
// (int64 timestamp, int32 offset-base); the last time entry covers the
// whole segment. They are written once the segment is sealed and durable.
func (s *segment) writeIndexFiles(fsys vfs.FS, dir string) error {
	idx, tix := s.indexFileBytes()
	for _, f := range []struct {
		suffix string
		data   []byte
	}{{indexSuffix, idx}, {timeIndexSuffix, tix}, {txnIndexSuffix, s.txnIndexBytes()}} {
		if err := writeFile(fsys, segmentName(dir, s.base, f.suffix), f.data); err != nil {
			return err
		}
	}
	return nil
}

// indexFileBytes is the content of the segment's .index and .timeindex files.
func (s *segment) indexFileBytes() (idx, tix []byte) {
	idx = make([]byte, 0, 8*len(s.index))
	for _, e := range s.index {
		idx = binary.BigEndian.AppendUint32(idx, uint32(e.offset-s.base))
		idx = binary.BigEndian.AppendUint32(idx, uint32(e.pos))
	}
	tix = make([]byte, 0, 12*(len(s.times)+1))
	for _, e := range s.times {
		tix = binary.BigEndian.AppendUint64(tix, uint64(e.ts))
		tix = binary.BigEndian.AppendUint32(tix, uint32(e.offset-s.base))
	}
	if s.maxTs >= 0 {
		tix = binary.BigEndian.AppendUint64(tix, uint64(s.maxTs))
		tix = binary.BigEndian.AppendUint32(tix, uint32(s.maxTsOffset-s.base))
	}
	return idx, tix
}

func writeFile(fsys vfs.FS, path string, data []byte) error {
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		_, err = f.WriteAt(data, 0)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// headerReader reads batch headers from a file through a small buffer, so a
// forward scan costs one pread per buffer, not one per batch.
type headerReader struct {
	f     vfs.File
	buf   []byte
	start int64 // file position of buf[0]
	n     int   // valid bytes in buf
	// onRead, when set, is told the bytes of every read (the cleaner's throttle).
	onRead func(n int)
}

func newHeaderReader(f vfs.File) *headerReader {
	return &headerReader{f: f, buf: make([]byte, 16<<10)}
}

// header parses the batch header at pos; limit is the end of valid data.
func (r *headerReader) header(pos, limit int64) (batch.Header, error) {
	if pos+batch.HeaderSize > limit {
		return batch.Header{}, fmt.Errorf("%w: %d bytes left at position %d, less than a header", batch.ErrCorrupt, limit-pos, pos)
	}
	if pos < r.start || pos+batch.HeaderSize > r.start+int64(r.n) {
		want := int64(len(r.buf))
		if limit-pos < want {
			want = limit - pos
		}
		n, err := r.f.ReadAt(r.buf[:want], pos)
		if err != nil && !(errors.Is(err, io.EOF) && n >= batch.HeaderSize) {
			if errors.Is(err, io.EOF) {
				return batch.Header{}, fmt.Errorf("%w: file ends inside the header at %d", batch.ErrCorrupt, pos)
			}
			return batch.Header{}, err
		}
		r.start, r.n = pos, n
		if r.onRead != nil {
			r.onRead(n)
		}
	}
	off := pos - r.start
	return batch.ParseHeader(r.buf[off : off+batch.HeaderSize])
}

// errBadIndex: index files that do not match their segment; the segment's
// headers are read instead and the files rewritten.
var errBadIndex = errors.New("engine: index files do not verify")

// loadIndexFiles fills the in-memory indexes from the .index and
// .timeindex files of a segment of size bytes, instead of reading every
// batch header. They verify when: the entries are well formed (whole
// entries, the first at position 0 with the base offset, offsets and
// positions strictly increasing and inside the file, time entries at index
// entries with rising timestamps); the last index entry points at a batch
// header carrying its offset; and the headers from there on (at most an
// index interval and a batch, for files written whole) are well-formed
// batches, contiguous, ending exactly at the end of the file, none with a
// timestamp above the segment's recorded maximum. Otherwise errBadIndex.
func (s *segment) loadIndexFiles(fsys vfs.FS, dir string, size int64) error {
	idx, err := vfs.ReadFile(fsys, segmentName(dir, s.base, indexSuffix))
	if err != nil {
		return err
	}
	tix, err := vfs.ReadFile(fsys, segmentName(dir, s.base, timeIndexSuffix))
	if err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", errBadIndex, s.path, fmt.Sprintf(format, args...))
	}
	if size == 0 {
		if len(idx) != 0 || len(tix) != 0 {
			return bad("empty segment with index entries")
		}
		return nil
	}
	if len(idx) == 0 || len(idx)%8 != 0 || len(tix)%12 != 0 {
		return bad("%d index bytes, %d time index bytes", len(idx), len(tix))
	}
	index := make([]indexEntry, 0, len(idx)/8)
	for i := 0; i < len(idx); i += 8 {
		e := indexEntry{offset: s.base + int64(binary.BigEndian.Uint32(idx[i:])), pos: int64(binary.BigEndian.Uint32(idx[i+4:]))}
		n := len(index)
		switch {
		case n == 0 && (e.offset != s.base || e.pos != 0):
			return bad("first entry (%d, %d), want (%d, 0)", e.offset, e.pos, s.base)
		case n > 0 && (e.offset <= index[n-1].offset || e.pos <= index[n-1].pos):
			return bad("entry %d (%d, %d) does not follow (%d, %d)", n, e.offset, e.pos, index[n-1].offset, index[n-1].pos)
		case e.pos >= size:
			return bad("entry %d at position %d, the file has %d bytes", n, e.pos, size)
		}
		index = append(index, e)
	}
	maxTs, maxTsOffset := int64(-1), int64(-1)
	var times []timeEntry
	for i := 0; i < len(tix); i += 12 {
		ts, off := int64(binary.BigEndian.Uint64(tix[i:])), s.base+int64(binary.BigEndian.Uint32(tix[i+8:]))
		if i+12 == len(tix) { // the last entry covers the whole segment
			maxTs, maxTsOffset = ts, off
			break
		}
		j, found := slices.BinarySearchFunc(index, off, func(e indexEntry, o int64) int { return cmp.Compare(e.offset, o) })
		if !found || ts < 0 || (len(times) > 0 && ts <= times[len(times)-1].ts) {
			return bad("time entry (%d, %d) is not at an index entry or does not rise", ts, off)
		}
		times = append(times, timeEntry{ts: ts, offset: off, pos: index[j].pos})
	}
	if len(times) > 0 && maxTs < times[len(times)-1].ts {
		return bad("maximum timestamp %d below a time entry", maxTs)
	}
	hr := newHeaderReader(s.file)
	first, err := hr.header(0, size)
	if err != nil {
		return bad("first batch: %v", err)
	}
	last := index[len(index)-1]
	pos, next := last.pos, last.offset
	var lh batch.Header
	for pos < size {
		h, err := hr.header(pos, size)
		switch {
		case err != nil:
			return bad("batch at %d: %v", pos, err)
		case h.BaseOffset != next || h.Magic != 2 || h.LastOffsetDelta < 0 || pos+int64(h.Size()) > size:
			return bad("batch at %d: offset %d (want %d), magic %d, %d bytes", pos, h.BaseOffset, next, h.Magic, h.Size())
		case h.MaxTimestamp > maxTs:
			return bad("batch at %d has timestamp %d, above the recorded maximum %d", pos, h.MaxTimestamp, maxTs)
		}
		lh = h
		next = h.LastOffset() + 1
		s.lastPos, s.lastCRC = pos, h.CRC
		pos += int64(h.Size())
	}
	s.index, s.times, s.sinceIndex = index, times, int(size-last.pos)
	s.size, s.end = size, lh.LastOffset()+1
	s.firstTs, s.maxTs, s.maxTsOffset = first.MaxTimestamp, maxTs, maxTsOffset
	s.horizonKnown = false // only some headers were read
	return nil
}
