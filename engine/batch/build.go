package batch

import (
	"encoding/binary"
	"fmt"
)

// Build encodes a batch of recs compressed with codec. From h it takes
// BaseOffset, PartitionLeaderEpoch, the attribute bits other than the codec,
// the timestamps and the producer fields; it sets Magic 2, the codec,
// NumRecords = len(recs), LastOffsetDelta = the last record's OffsetDelta
// (h.LastOffsetDelta when recs is empty), Length and CRC. Records are
// written with the offset deltas they carry. A batch of no records is not
// compressed, whatever codec says: there is no payload to decompress, and
// clients refuse a compressed batch without one (franz-go: "s2: corrupt
// input"). Build panics on an unknown codec.
func Build(h Header, recs []Record, codec Codec) []byte {
	if codec < CodecNone || codec > CodecZstd {
		panic(fmt.Sprintf("batch: Build: unknown codec %d", int8(codec)))
	}
	if len(recs) == 0 {
		codec = CodecNone
	}
	size := 0
	for i := range recs {
		n := recordBodySize(&recs[i])
		size += varintSize(int32(n)) + n
	}
	b := make([]byte, HeaderSize, HeaderSize+size)
	if codec == CodecNone {
		b = appendRecords(b, recs)
	} else if len(recs) > 0 {
		raw := appendRecords(make([]byte, 0, size), recs)
		b = compress(b, raw, codec)
	}
	h.Magic = 2
	h.Attributes = h.Attributes&^attrCodecMask | int16(codec)
	h.NumRecords = int32(len(recs))
	if len(recs) > 0 {
		h.LastOffsetDelta = recs[len(recs)-1].OffsetDelta
	}
	h.Length = int32(len(b) - 12)
	putHeader(b, h)
	setCRC(b)
	return b
}

// BuildCompacted encodes the records a log cleaner kept of a batch whose
// header is h, as Build does, except that the batch keeps h's
// LastOffsetDelta: its offset range stays what it was (and with it an
// idempotent producer's sequence range), whatever records were removed, as
// Kafka's cleaner keeps it. recs carry their original offset deltas; an
// empty recs gives a batch of no records.
func BuildCompacted(h Header, recs []Record, codec Codec) []byte {
	b := Build(h, recs, codec)
	binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(h.LastOffsetDelta))
	setCRC(b)
	return b
}

// Recompress rebuilds batch b with its records compressed by to, keeping
// every header field but the codec bits, Length and CRC. When b already
// uses to, b itself is returned. b must be a whole batch (see Validate);
// Recompress checks its framing and that its records decompress.
func Recompress(b []byte, to Codec) ([]byte, error) {
	if to < CodecNone || to > CodecZstd {
		return nil, fmt.Errorf("batch: Recompress: unknown codec %d", int8(to))
	}
	h, payload, err := check(b, true)
	if err != nil {
		return nil, err
	}
	from := h.Codec()
	if from == to {
		return b, nil
	}
	out := make([]byte, HeaderSize, HeaderSize+len(payload))
	copy(out, b[:HeaderSize])
	if len(payload) > 0 {
		if from == CodecNone {
			out = compress(out, payload, to)
		} else if to == CodecNone {
			out, err = decompress(out, payload, from, decompressLimit(len(payload)))
		} else {
			buf := scratch.Get().(*[]byte)
			var raw []byte
			raw, err = decompress((*buf)[:0], payload, from, decompressLimit(len(payload)))
			if err == nil {
				out = compress(out, raw, to)
			}
			if cap(raw) <= maxPooledBuf {
				*buf = raw[:0]
				scratch.Put(buf)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	be := binary.BigEndian
	be.PutUint16(out[offAttributes:], uint16(h.Attributes&^attrCodecMask|int16(to)))
	be.PutUint32(out[offLength:], uint32(len(out)-12))
	setCRC(out)
	return out, nil
}

func appendRecords(b []byte, recs []Record) []byte {
	for i := range recs {
		r := &recs[i]
		b = binary.AppendVarint(b, int64(recordBodySize(r)))
		b = append(b, 0) // attributes
		b = binary.AppendVarint(b, r.TimestampDelta)
		b = binary.AppendVarint(b, int64(r.OffsetDelta))
		b = appendBytesField(b, r.Key)
		b = appendBytesField(b, r.Value)
		b = binary.AppendVarint(b, int64(len(r.Headers)))
		for _, h := range r.Headers {
			b = binary.AppendVarint(b, int64(len(h.Key)))
			b = append(b, h.Key...)
			b = appendBytesField(b, h.Value)
		}
	}
	return b
}

func appendBytesField(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(v)))
	return append(b, v...)
}

func recordBodySize(r *Record) int {
	n := 1 + varlongSize(r.TimestampDelta) + varintSize(r.OffsetDelta) +
		bytesFieldSize(r.Key) + bytesFieldSize(r.Value) + varintSize(int32(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintSize(int32(len(h.Key))) + len(h.Key) + bytesFieldSize(h.Value)
	}
	return n
}

func bytesFieldSize(v []byte) int {
	if v == nil {
		return 1
	}
	return varintSize(int32(len(v))) + len(v)
}

func varintSize(v int32) int { return varlongSize(int64(v)) }

func varlongSize(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}
