package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderSize is the size of the v2 batch header up to and including the
// records count.
const HeaderSize = 61

// Field offsets in the batch header.
const (
	offBaseOffset      = 0
	offLength          = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offFirstTimestamp  = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offNumRecords      = 57

	// minLength is the smallest valid batchLength: a header without records.
	minLength = HeaderSize - offLeaderEpoch
)

// Attribute bits.
const (
	attrCodecMask     = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
	// attrDeleteHorizon: FirstTimestamp holds the time after which a log
	// cleaner may remove the batch's tombstones (KIP-534); the records'
	// timestamp deltas are relative to it.
	attrDeleteHorizon = 0x40
)

// Errors. Callers map them to Kafka error codes: ErrCorrupt to
// CORRUPT_MESSAGE, ErrUnsupportedMagic to UNSUPPORTED_FOR_MESSAGE_FORMAT,
// ErrTooLarge (the batch as sent exceeds max.message.bytes) to
// MESSAGE_TOO_LARGE, ErrDecompressedTooLarge (the decompression-bomb guard,
// see MinDecompressLimit) to INVALID_RECORD. Returned errors wrap one of them
// with the precise reason.
var (
	ErrCorrupt              = errors.New("batch: corrupt")
	ErrUnsupportedMagic     = errors.New("batch: unsupported magic")
	ErrTooLarge             = errors.New("batch: too large")
	ErrDecompressedTooLarge = errors.New("batch: records decompress beyond the decompression-bomb guard")
)

// Codec is a compression codec, the low three bits of the attributes.
type Codec int8

// Codecs.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

// ParseCodec returns the codec named as in Kafka's compression.type
// ("none", "gzip", "snappy", "lz4", "zstd").
func ParseCodec(name string) (Codec, bool) {
	switch name {
	case "none":
		return CodecNone, true
	case "gzip":
		return CodecGzip, true
	case "snappy":
		return CodecSnappy, true
	case "lz4":
		return CodecLZ4, true
	case "zstd":
		return CodecZstd, true
	}
	return 0, false
}

// String returns the Kafka name of the codec.
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// Header is the decoded v2 batch header.
type Header struct {
	BaseOffset           int64
	Length               int32 // batchLength: bytes after this field
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	FirstTimestamp       int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// Codec returns the compression codec of the records.
func (h Header) Codec() Codec { return Codec(h.Attributes & attrCodecMask) }

// IsTransactional reports whether the batch belongs to a transaction.
func (h Header) IsTransactional() bool { return h.Attributes&attrTransactional != 0 }

// IsControl reports whether the batch holds a control record.
func (h Header) IsControl() bool { return h.Attributes&attrControl != 0 }

// HasDeleteHorizon reports whether FirstTimestamp is the delete horizon a
// log cleaner set: the time (ms) from which the batch's tombstones may go.
func (h Header) HasDeleteHorizon() bool { return h.Attributes&attrDeleteHorizon != 0 }

// SetDeleteHorizon makes ms the delete horizon of the batch h describes
// (FirstTimestamp, with the flag set). Record timestamp deltas are relative
// to FirstTimestamp: whoever rebuilds the batch must shift them by the
// difference.
func (h *Header) SetDeleteHorizon(ms int64) {
	h.Attributes |= attrDeleteHorizon
	h.FirstTimestamp = ms
}

// ClearDeleteHorizon drops the delete horizon of the batch h describes,
// making firstTs its FirstTimestamp again (a cleaner does so once the
// batch's tombstones are gone). As with SetDeleteHorizon, whoever rebuilds
// the batch must shift the record timestamp deltas by the difference.
func (h *Header) ClearDeleteHorizon(firstTs int64) {
	h.Attributes &^= attrDeleteHorizon
	h.FirstTimestamp = firstTs
}

// LogAppendTime reports whether the timestamp type is log-append time.
func (h Header) LogAppendTime() bool { return h.Attributes&attrLogAppendTime != 0 }

// Size is the total size of the batch on the wire.
func (h Header) Size() int { return 12 + int(h.Length) }

// LastOffset is the offset of the last record of the batch.
func (h Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// ParseHeader decodes the header at the start of b. It checks only that b
// holds a whole header and that batchLength covers one; it does not check the
// magic (Validate does), so it also serves to inspect what a client sent.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, need %d for a header", ErrCorrupt, len(b), HeaderSize)
	}
	be := binary.BigEndian
	h := Header{
		BaseOffset:           int64(be.Uint64(b[offBaseOffset:])),
		Length:               int32(be.Uint32(b[offLength:])),
		PartitionLeaderEpoch: int32(be.Uint32(b[offLeaderEpoch:])),
		Magic:                int8(b[offMagic]),
		CRC:                  be.Uint32(b[offCRC:]),
		Attributes:           int16(be.Uint16(b[offAttributes:])),
		LastOffsetDelta:      int32(be.Uint32(b[offLastOffsetDelta:])),
		FirstTimestamp:       int64(be.Uint64(b[offFirstTimestamp:])),
		MaxTimestamp:         int64(be.Uint64(b[offMaxTimestamp:])),
		ProducerID:           int64(be.Uint64(b[offProducerID:])),
		ProducerEpoch:        int16(be.Uint16(b[offProducerEpoch:])),
		BaseSequence:         int32(be.Uint32(b[offBaseSequence:])),
		NumRecords:           int32(be.Uint32(b[offNumRecords:])),
	}
	if h.Length < minLength {
		return h, fmt.Errorf("%w: batch length %d below header length %d", ErrCorrupt, h.Length, minLength)
	}
	return h, nil
}

// putHeader writes h into b[:HeaderSize] as is (CRC included).
func putHeader(b []byte, h Header) {
	be := binary.BigEndian
	be.PutUint64(b[offBaseOffset:], uint64(h.BaseOffset))
	be.PutUint32(b[offLength:], uint32(h.Length))
	be.PutUint32(b[offLeaderEpoch:], uint32(h.PartitionLeaderEpoch))
	b[offMagic] = byte(h.Magic)
	be.PutUint32(b[offCRC:], h.CRC)
	be.PutUint16(b[offAttributes:], uint16(h.Attributes))
	be.PutUint32(b[offLastOffsetDelta:], uint32(h.LastOffsetDelta))
	be.PutUint64(b[offFirstTimestamp:], uint64(h.FirstTimestamp))
	be.PutUint64(b[offMaxTimestamp:], uint64(h.MaxTimestamp))
	be.PutUint64(b[offProducerID:], uint64(h.ProducerID))
	be.PutUint16(b[offProducerEpoch:], uint16(h.ProducerEpoch))
	be.PutUint32(b[offBaseSequence:], uint32(h.BaseSequence))
	be.PutUint32(b[offNumRecords:], uint32(h.NumRecords))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the batch CRC: CRC-32C over attributes to the end.
func checksum(b []byte) uint32 { return crc32.Checksum(b[offAttributes:], castagnoli) }

// setCRC recomputes and stores the CRC of the whole batch b.
func setCRC(b []byte) { binary.BigEndian.PutUint32(b[offCRC:], checksum(b)) }

// Split cuts the records field of a Produce request into whole batches. The
// batches are subslices of records; nothing is copied. It checks only the
// framing: every batch must have magic 2 (else ErrUnsupportedMagic), a
// batchLength that covers a header and that fits in what is left (else
// ErrCorrupt). Empty records give no batches and no error.
func Split(records []byte) ([][]byte, error) { return SplitInto(nil, records) }

// SplitInto is Split appending to out: a caller that passes a small array of its own (most
// requests carry one batch per partition) spares the allocation of the result.
func SplitInto(out [][]byte, records []byte) ([][]byte, error) {
	for off := 0; off < len(records); {
		rest := records[off:]
		if len(rest) < offMagic+1 {
			return nil, fmt.Errorf("%w: %d trailing bytes at %d, too short for a batch", ErrCorrupt, len(rest), off)
		}
		if m := int8(rest[offMagic]); m != 2 {
			return nil, fmt.Errorf("%w: magic %d at %d", ErrUnsupportedMagic, m, off)
		}
		length := int32(binary.BigEndian.Uint32(rest[offLength:]))
		if length < minLength {
			return nil, fmt.Errorf("%w: batch length %d at %d below header length %d", ErrCorrupt, length, off, minLength)
		}
		size := 12 + int(length)
		if size > len(rest) {
			return nil, fmt.Errorf("%w: partial batch at %d: %d bytes of %d", ErrCorrupt, off, len(rest), size)
		}
		if out == nil {
			// Most requests carry one batch per partition.
			out = make([][]byte, 0, 1)
		}
		out = append(out, rest[:size:size])
		off += size
	}
	return out, nil
}

// SetBaseOffset stores off as the base offset of batch b (not CRC covered).
// b must hold at least a header.
func SetBaseOffset(b []byte, off int64) {
	binary.BigEndian.PutUint64(b[offBaseOffset:offBaseOffset+8], uint64(off))
}

// SetPartitionLeaderEpoch stores epoch in batch b (not CRC covered). b must
// hold at least a header.
func SetPartitionLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offLeaderEpoch:offLeaderEpoch+4], uint32(epoch))
}

// SetLogAppendTime marks the whole batch b as stamped with log-append time
// ts: it sets the timestamp-type bit and MaxTimestamp, and recomputes the
// CRC. Like Kafka it leaves FirstTimestamp and the record deltas alone;
// consumers use MaxTimestamp for every record of such a batch.
func SetLogAppendTime(b []byte, ts int64) {
	be := binary.BigEndian
	attr := be.Uint16(b[offAttributes:offAttributes+2]) | attrLogAppendTime
	be.PutUint16(b[offAttributes:], attr)
	be.PutUint64(b[offMaxTimestamp:offMaxTimestamp+8], uint64(ts))
	setCRC(b)
}
