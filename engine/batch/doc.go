// Package batch is the pure logic of Kafka record batches (magic v2): it
// parses and validates the batches producers send, patches the header fields
// the broker owns (base offset, leader epoch, log-append time), decompresses
// and recompresses records, and builds batches for tests and tools.
//
// It must not do I/O, keep state between calls (beyond pooled codecs) or know
// about partitions, offsets in a log or producers: callers own those.
//
// # Wire layout
//
// All integers are big endian. The CRC is CRC-32C (Castagnoli) over every
// byte from attributes to the end of the batch, so the broker can patch the
// base offset and partition leader epoch without recomputing it.
//
//	offset size field
//	     0    8 baseOffset            first offset of the batch
//	     8    4 batchLength           bytes after this field (Size() = 12 + batchLength)
//	    12    4 partitionLeaderEpoch
//	    16    1 magic                 2
//	    17    4 crc                   CRC-32C of bytes [21, end)
//	    21    2 attributes            bits 0-2 codec, 3 timestamp type (1 = log-append time),
//	                                  4 transactional, 5 control
//	    23    4 lastOffsetDelta       offset of the last record relative to baseOffset
//	    27    8 firstTimestamp
//	    35    8 maxTimestamp
//	    43    8 producerId
//	    51    2 producerEpoch
//	    53    4 baseSequence
//	    57    4 recordsCount
//	    61    … records               compressed as one block when codec != none
//
// Each record (varint = zigzag varint of at most 5 bytes, varlong of at most
// 10; a length of -1 means null):
//
//	length          varint  bytes of the record after this field
//	attributes      int8    unused, 0
//	timestampDelta  varlong relative to firstTimestamp
//	offsetDelta     varint  index of the record in its batch
//	keyLength       varint  then key bytes
//	valueLength     varint  then value bytes
//	headersCount    varint  then per header: keyLength varint (>= 0), key,
//	                        valueLength varint, value
//
// Compressed records: gzip (RFC 1952, possibly several members), snappy
// (a raw snappy block, or xerial framing as the Java client writes it:
// "\x82SNAPPY\x00", int32 version, int32 compatible version, then blocks of
// int32 length + raw snappy block), lz4 (the LZ4 frame format), zstd (one or
// more zstd frames).
//
// Decompression is bounded (see [MaxDecompressRatio], [MinDecompressLimit]
// and [MaxDecompressedBytes]) so a small hostile batch cannot make the broker
// allocate without limit. That guard is separate from max.message.bytes,
// which is checked against the batch as sent (compressed), as Kafka does.
package batch
