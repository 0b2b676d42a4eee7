package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

	maxTs       int64 // largest batch max timestamp, -1 when none
	maxTsOffset int64 // last offset of that batch
	firstTs     int64 // the first batch's max timestamp, -1 when none: segment.ms counts from it

	indexed bool // .index/.timeindex files written (sealed and durable)

	// Write-behind: bytes before wbFrom were handed to the kernel's
	// writeback by the checkpointer; wbAsked: it has been asked to do more.
	wbFrom  int64
	wbAsked bool
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
	return &segment{base: base, path: path, file: f, end: base, maxTs: -1, maxTsOffset: -1, firstTs: -1}, nil
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
	s.size = pos + int64(h.Size())
	s.end = h.LastOffset() + 1
}

// reset forgets the in-memory index, before a rescan.
func (s *segment) reset() {
	s.size, s.end, s.firstTs = 0, s.base, -1
	s.index, s.times, s.sinceIndex = nil, nil, 0
	s.maxTs, s.maxTsOffset = -1, -1
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
	idx := make([]byte, 0, 8*len(s.index))
	for _, e := range s.index {
		idx = binary.BigEndian.AppendUint32(idx, uint32(e.offset-s.base))
		idx = binary.BigEndian.AppendUint32(idx, uint32(e.pos))
	}
	tix := make([]byte, 0, 12*(len(s.times)+1))
	for _, e := range s.times {
		tix = binary.BigEndian.AppendUint64(tix, uint64(e.ts))
		tix = binary.BigEndian.AppendUint32(tix, uint32(e.offset-s.base))
	}
	if s.maxTs >= 0 {
		tix = binary.BigEndian.AppendUint64(tix, uint64(s.maxTs))
		tix = binary.BigEndian.AppendUint32(tix, uint32(s.maxTsOffset-s.base))
	}
	for _, f := range []struct {
		suffix string
		data   []byte
	}{{indexSuffix, idx}, {timeIndexSuffix, tix}} {
		if err := writeFile(fsys, segmentName(dir, s.base, f.suffix), f.data); err != nil {
			return err
		}
	}
	return nil
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
	}
	off := pos - r.start
	return batch.ParseHeader(r.buf[off : off+batch.HeaderSize])
}
