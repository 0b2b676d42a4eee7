package engine

import (
	"encoding/binary"
	"fmt"

	"github.com/ringtail/ringtail/engine/batch"
)

// The engine's WAL payload codec. Package wal frames and checksums records
// and knows nothing of what they hold; every payload the engine writes
// starts with the same 28-byte header:
//
//	+--------------+--------------+-----------+----------------------------------+
//	| topic id     | partition    | offset    | body                             |
//	| [16]byte     | int32 BE     | int64 BE  |                                  |
//	+--------------+--------------+-----------+----------------------------------+
//
//   - data: offset is the base offset of the first batch, the body the
//     batches exactly as written to the segment (at least one, so at least
//     batch.HeaderSize bytes);
//   - truncation: offset is the new log end, the body the single byte
//     walTruncateTag. No data body is one byte long, so the two never
//     collide and data records written before truncations existed decode
//     unchanged;
//   - reset (reset.go): offset is where the emptied log restarts, the body
//     the single byte walResetTag.

const (
	payloadHeaderSize = 28 // topic id [16], partition int32, offset int64 (big endian)
	walTruncateTag    = 1
	walResetTag       = 2
)

// walKey names a partition in WAL payloads.
type walKey struct {
	id   [16]byte
	part int32
}

// walPayload is one decoded WAL payload.
type walPayload struct {
	key      walKey
	offset   int64  // data: base offset of the first batch; truncation: the new log end; reset: the new start
	truncate bool   // a truncation record
	reset    bool   // a reset record
	batches  []byte // data: the batches
}

// walDataHeader is the header of a data payload; the batches follow it as
// the WAL record's second part, so they are not copied.
func walDataHeader(id [16]byte, part int32, base int64) []byte {
	return putWALHeader(make([]byte, payloadHeaderSize), id, part, base)
}

// walTruncation is the payload recording that a partition's log was cut
// back to end.
func walTruncation(id [16]byte, part int32, end int64) []byte {
	b := putWALHeader(make([]byte, payloadHeaderSize+1), id, part, end)
	b[payloadHeaderSize] = walTruncateTag
	return b
}

// walReset is the payload recording that a partition's log was emptied to restart at offset.
func walReset(id [16]byte, part int32, offset int64) []byte {
	b := putWALHeader(make([]byte, payloadHeaderSize+1), id, part, offset)
	b[payloadHeaderSize] = walResetTag
	return b
}

func putWALHeader(b []byte, id [16]byte, part int32, off int64) []byte {
	copy(b, id[:])
	binary.BigEndian.PutUint32(b[16:], uint32(part))
	binary.BigEndian.PutUint64(b[20:], uint64(off))
	return b
}

// decodeWALPayload splits a payload into its header and body. It checks the
// shape only; the batches are parsed by the replay.
func decodeWALPayload(b []byte) (walPayload, error) {
	if len(b) < payloadHeaderSize {
		return walPayload{}, fmt.Errorf("payload of %d bytes, shorter than its %d-byte header", len(b), payloadHeaderSize)
	}
	var r walPayload
	copy(r.key.id[:], b)
	r.key.part = int32(binary.BigEndian.Uint32(b[16:]))
	r.offset = int64(binary.BigEndian.Uint64(b[20:]))
	body := b[payloadHeaderSize:]
	switch {
	case len(body) == 1 && body[0] == walTruncateTag:
		r.truncate = true
	case len(body) == 1 && body[0] == walResetTag:
		r.reset = true
	case len(body) >= batch.HeaderSize:
		r.batches = body
	default:
		return r, fmt.Errorf("payload body of %d bytes is neither batches, a truncation nor a reset", len(body))
	}
	return r, nil
}
