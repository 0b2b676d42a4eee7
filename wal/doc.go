// Package wal is the shared write-ahead log of one data directory: one
// writer goroutine, group commit without a timer, records made durable a
// whole cycle at a time on one of two devices, and recovery that tells live
// records from stale ones. It knows nothing of partitions or Kafka: a record
// is an opaque payload with a sequence number (the engine's payload codec
// lives in engine/walpayload.go).
//
// Files, by job:
//
//	framing.go        the record layout below, the header writer
//	writer.go         Log, Open, Append, Committed, Close
//	commit.go         group commit: cycles, lanes, in-order completion, failed extents
//	files.go          file naming, switching, recycling (Release) and background preparation
//	recover.go        the reader and recovery from a checkpoint position
//	device.go         the device interface and the portable writer (pwrite + fdatasync)
//	device_uring.go   the io_uring writer (O_DIRECT, RWF_DSYNC or write+fsync chain)
//
// # Record framing
//
// Every record starts on an 8-byte boundary:
//
//	+-------+--------+--------+---------+------+--------+----------------------+-----------+
//	| magic | crc32c | seq    | length  | kind | zero   | payload (length)     | zero pad  |
//	| u32 LE| u32 LE | u64 LE | u32 LE  | u8   | 11 B   |                      | to 8 B    |
//	+-------+--------+--------+---------+------+--------+----------------------+-----------+
//
// magic "RWAL"; CRC-32C over bytes 8..32 and, for data records (kind 1), the
// payload; pad records (kind 2) carry the next data record's seq and fill a
// cycle to the next 4 KiB boundary (fewer than 32 bytes left are zeros); seq
// increases by one per data record. See Log for the file and failure rules.
package wal
