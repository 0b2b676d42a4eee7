package batch

import (
	"fmt"
	"sync"
)

// Validate checks one whole batch b as a broker must before storing it:
//
//   - magic 2, else ErrUnsupportedMagic;
//   - when maxBatchBytes > 0, len(b) <= maxBatchBytes (the batch as sent,
//     compressed: Kafka's max.message.bytes), else ErrTooLarge;
//   - batchLength matches len(b), the CRC-32C matches, NumRecords >= 0 and,
//     for a non-empty batch, LastOffsetDelta == NumRecords-1;
//   - the records decompress within the bounds of [decompressLimit] (else
//     ErrDecompressedTooLarge) and hold exactly NumRecords well-formed records whose
//     offset deltas are their indexes, with no bytes left over.
//
// Everything else is ErrCorrupt. MaxTimestamp >= FirstTimestamp is not
// required (clients vary). An empty batch (NumRecords 0, as compaction
// leaves) passes; a produce path that refuses those must check NumRecords.
// Validate does not allocate for an uncompressed valid batch.
func Validate(b []byte, maxBatchBytes int) error {
	h, payload, err := check(b, true)
	if err != nil {
		return err
	}
	if maxBatchBytes > 0 && len(b) > maxBatchBytes {
		return fmt.Errorf("%w: batch of %d bytes exceeds %d", ErrTooLarge, len(b), maxBatchBytes)
	}
	if got := checksum(b); got != h.CRC {
		return fmt.Errorf("%w: crc mismatch: computed %#08x, header says %#08x", ErrCorrupt, got, h.CRC)
	}
	return walkPayload(h, payload, nil, true)
}

// ValidateStored checks a batch read back from a log, as Validate does with
// no size limit, except that it accepts what log compaction leaves: records
// removed from a batch that keeps its offset range, so the offset deltas
// rise but may skip, and the last offset delta is at least NumRecords-1
// (Kafka's cleaner keeps the base offset and last offset delta of a batch so
// that an idempotent producer's sequence range stays whole).
func ValidateStored(b []byte) error {
	h, payload, err := check(b, false)
	if err != nil {
		return err
	}
	if got := checksum(b); got != h.CRC {
		return fmt.Errorf("%w: crc mismatch: computed %#08x, header says %#08x", ErrCorrupt, got, h.CRC)
	}
	return walkPayload(h, payload, nil, false)
}

// CheckCRC checks what a replica must before storing a batch its leader
// already validated: magic 2, the length, the record count against the last
// offset delta (at least NumRecords-1: a compacted leader's batches may have
// lost records, see ValidateStored), and the CRC-32C. It returns the parsed
// header. The records are not walked.
func CheckCRC(b []byte) (Header, error) {
	h, _, err := check(b, false)
	if err != nil {
		return h, err
	}
	if got := checksum(b); got != h.CRC {
		return h, fmt.Errorf("%w: crc mismatch: computed %#08x, header says %#08x", ErrCorrupt, got, h.CRC)
	}
	return h, nil
}

// check parses the header of b and checks what needs no decoding: magic,
// length, record count against last offset delta (equal to NumRecords-1 when
// strict, at least that otherwise: a compacted batch).
func check(b []byte, strict bool) (Header, []byte, error) {
	if len(b) >= offMagic+1 && int8(b[offMagic]) != 2 {
		return Header{}, nil, fmt.Errorf("%w: magic %d", ErrUnsupportedMagic, int8(b[offMagic]))
	}
	h, err := ParseHeader(b)
	if err != nil {
		return h, nil, err
	}
	if h.Size() != len(b) {
		return h, nil, fmt.Errorf("%w: batch length %d says %d bytes, have %d", ErrCorrupt, h.Length, h.Size(), len(b))
	}
	if h.NumRecords < 0 {
		return h, nil, fmt.Errorf("%w: negative record count %d", ErrCorrupt, h.NumRecords)
	}
	if h.NumRecords > 0 && (h.LastOffsetDelta < h.NumRecords-1 || strict && h.LastOffsetDelta != h.NumRecords-1) {
		return h, nil, fmt.Errorf("%w: last offset delta %d with %d records", ErrCorrupt, h.LastOffsetDelta, h.NumRecords)
	}
	if c := h.Codec(); c > CodecZstd {
		return h, nil, fmt.Errorf("%w: unknown compression codec %d", ErrCorrupt, int8(c))
	}
	return h, b[HeaderSize:], nil
}

// scratch holds decompression buffers for Validate.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

// walkPayload decompresses payload if needed and walks its records,
// appending them to out when out is not nil. strict: the offset deltas must
// be the records' indexes; otherwise they must rise, up to h.LastOffsetDelta
// (a compacted batch).
func walkPayload(h Header, payload []byte, out *[]Record, strict bool) error {
	lim := deltaLimit{strict: strict, last: h.LastOffsetDelta}
	c := h.Codec()
	if c == CodecNone || (h.NumRecords == 0 && len(payload) == 0) {
		return walk(payload, h.NumRecords, out, lim)
	}
	if out != nil {
		// Records keep pointing into the decompressed bytes.
		data, err := decompress(nil, payload, c, decompressLimit(len(payload)))
		if err != nil {
			return err
		}
		return walk(data, h.NumRecords, out, lim)
	}
	buf := scratch.Get().(*[]byte)
	data, err := decompress((*buf)[:0], payload, c, decompressLimit(len(payload)))
	if err == nil {
		err = walk(data, h.NumRecords, nil, lim)
	}
	if cap(data) <= maxPooledBuf {
		*buf = data[:0]
		scratch.Put(buf)
	}
	return err
}

// deltaLimit says which record offset deltas a batch may hold.
type deltaLimit struct {
	strict bool  // each delta is its record's index
	last   int32 // otherwise: rising, at most last (the batch's last offset delta)
}

// walk checks that data holds exactly n records, appending them to out
// when out is not nil.
func walk(data []byte, n int32, out *[]Record, lim deltaLimit) error {
	if out != nil {
		// Each record takes at least 7 bytes; do not trust n for the size.
		*out = make([]Record, 0, min(int(n), len(data)/7))
	}
	off, prev := 0, int32(-1)
	for i := int32(0); i < n; i++ {
		length, p, ok := varint(data, off)
		if !ok {
			return fmt.Errorf("%w: record %d: bad length varint at %d", ErrCorrupt, i, off)
		}
		if length < 0 || int(length) > len(data)-p {
			return fmt.Errorf("%w: record %d: length %d, %d bytes left", ErrCorrupt, i, length, len(data)-p)
		}
		end := p + int(length)
		delta, err := record(data[p:end], i, out)
		if err != nil {
			return err
		}
		if lim.strict && delta != i || !lim.strict && (delta <= prev || delta > lim.last) {
			return fmt.Errorf("%w: record %d: offset delta %d", ErrCorrupt, i, delta)
		}
		prev = delta
		off = end
	}
	if off != len(data) {
		return fmt.Errorf("%w: %d bytes left over after %d records", ErrCorrupt, len(data)-off, n)
	}
	return nil
}

// record checks the body of record i (everything after its length) and
// returns its offset delta.
func record(r []byte, i int32, out *[]Record) (int32, error) {
	if len(r) < 1 {
		return 0, fmt.Errorf("%w: record %d: empty", ErrCorrupt, i)
	}
	p := 1 // attributes: unused
	tsDelta, p, ok := varlong(r, p)
	if !ok {
		return 0, fmt.Errorf("%w: record %d: bad timestamp delta", ErrCorrupt, i)
	}
	offDelta, p, ok := varint(r, p)
	if !ok {
		return 0, fmt.Errorf("%w: record %d: bad offset delta", ErrCorrupt, i)
	}
	key, p, ok := bytesField(r, p)
	if !ok {
		return 0, fmt.Errorf("%w: record %d: bad key", ErrCorrupt, i)
	}
	value, p, ok := bytesField(r, p)
	if !ok {
		return 0, fmt.Errorf("%w: record %d: bad value", ErrCorrupt, i)
	}
	nh, p, ok := varint(r, p)
	if !ok || nh < 0 || int(nh) > (len(r)-p)/2 {
		return 0, fmt.Errorf("%w: record %d: bad header count %d", ErrCorrupt, i, nh)
	}
	var headers []RecordHeader
	if out != nil && nh > 0 {
		headers = make([]RecordHeader, 0, nh)
	}
	for j := int32(0); j < nh; j++ {
		var hk, hv []byte
		hk, p, ok = bytesField(r, p)
		if !ok || hk == nil {
			return 0, fmt.Errorf("%w: record %d: header %d: bad key", ErrCorrupt, i, j)
		}
		hv, p, ok = bytesField(r, p)
		if !ok {
			return 0, fmt.Errorf("%w: record %d: header %d: bad value", ErrCorrupt, i, j)
		}
		if out != nil {
			headers = append(headers, RecordHeader{Key: string(hk), Value: hv})
		}
	}
	if p != len(r) {
		return 0, fmt.Errorf("%w: record %d: %d bytes left over", ErrCorrupt, i, len(r)-p)
	}
	if out != nil {
		*out = append(*out, Record{OffsetDelta: offDelta, TimestampDelta: tsDelta, Key: key, Value: value, Headers: headers})
	}
	return offDelta, nil
}

// bytesField reads a varint length and that many bytes; length -1 is null
// (nil), 0 is empty (not nil).
func bytesField(b []byte, off int) ([]byte, int, bool) {
	n, p, ok := varint(b, off)
	if !ok || n < -1 || int(n) > len(b)-p {
		return nil, p, false
	}
	if n == -1 {
		return nil, p, true
	}
	return b[p : p+int(n) : p+int(n)], p + int(n), true
}

// varint decodes Kafka's zigzag int32 varint (at most 5 bytes) at b[off:].
func varint(b []byte, off int) (int32, int, bool) {
	var x uint32
	for s := uint(0); s < 35; s += 7 {
		if off >= len(b) {
			return 0, off, false
		}
		c := b[off]
		off++
		if s == 28 && c > 0x0f {
			return 0, off, false // overflows 32 bits or runs past 5 bytes
		}
		x |= uint32(c&0x7f) << s
		if c < 0x80 {
			return int32(x>>1) ^ -int32(x&1), off, true
		}
	}
	return 0, off, false
}

// varlong decodes Kafka's zigzag int64 varint (at most 10 bytes) at b[off:].
func varlong(b []byte, off int) (int64, int, bool) {
	var x uint64
	for s := uint(0); s < 70; s += 7 {
		if off >= len(b) {
			return 0, off, false
		}
		c := b[off]
		off++
		if s == 63 && c > 0x01 {
			return 0, off, false
		}
		x |= uint64(c&0x7f) << s
		if c < 0x80 {
			return int64(x>>1) ^ -int64(x&1), off, true
		}
	}
	return 0, off, false
}

// Record is one decoded record. Key, Value and header values are nil when
// null and non-nil (possibly empty) otherwise; they point into the batch or
// its decompressed records.
type Record struct {
	OffsetDelta    int32
	TimestampDelta int64
	Key, Value     []byte
	Headers        []RecordHeader
}

// RecordHeader is one record header.
type RecordHeader struct {
	Key   string
	Value []byte
}

// Records decodes the records of batch b. It checks b as ValidateStored
// does (a compacted batch's offset deltas may skip) and returns the same
// errors.
func Records(b []byte) ([]Record, error) {
	h, payload, err := check(b, false)
	if err != nil {
		return nil, err
	}
	if got := checksum(b); got != h.CRC {
		return nil, fmt.Errorf("%w: crc mismatch: computed %#08x, header says %#08x", ErrCorrupt, got, h.CRC)
	}
	var recs []Record
	if err := walkPayload(h, payload, &recs, false); err != nil {
		return nil, err
	}
	return recs, nil
}
