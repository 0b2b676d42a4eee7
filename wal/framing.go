package wal

import (
	"encoding/binary"
	"hash/crc32"
)

// Record framing. Every record starts on an 8-byte boundary:
//
//	off  size
//	0    4    magic "RWAL" (0x4c415752 little endian)
//	4    4    CRC-32C (Castagnoli) of bytes 8..32 and, for data records, the payload
//	8    8    sequence number (data: this record's; pad: the next data record's)
//	16   4    payload length
//	20   1    kind: 1 data, 2 pad
//	21   11   zero
//	32   len  payload, then zeros up to the next multiple of 8
const (
	walHeaderSize        = 32
	walMagic      uint32 = 0x4c415752
	walKindData   byte   = 1
	walKindPad    byte   = 2
	walSuffix            = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func walRecordSize(payload int) int { return (walHeaderSize + payload + 7) &^ 7 }

// putHeader writes a record header into b[:32].
func putHeader(b []byte, kind byte, seq uint64, payload [][]byte) {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	binary.LittleEndian.PutUint32(b[0:], walMagic)
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint32(b[16:], uint32(n))
	b[20] = kind
	clear(b[21:walHeaderSize])
	crc := crc32.Update(0, castagnoli, b[8:walHeaderSize])
	for _, p := range payload {
		crc = crc32.Update(crc, castagnoli, p)
	}
	binary.LittleEndian.PutUint32(b[4:], crc)
}
