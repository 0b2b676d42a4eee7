// Package engine owns the partition logs of one data directory: record
// batch validation, offset assignment, idempotent-producer deduplication,
// segments with their sparse offset and time indexes, fetch reads, the
// group-commit syncer that decides when an append is acknowledged, and
// crash recovery. It knows nothing of sockets or Kafka requests (net/ does)
// and does all file I/O through uring.FS.
//
// # On-disk layout
//
//	<data>/
//	  <topic>-<partition>/
//	    partition.metadata               "version: 0\ntopic_id: <base64url>\n"
//	    00000000000000000000.log         sealed segment: record batches back to back
//	    00000000000000000000.index       written once the segment is sealed and durable
//	    00000000000000000000.timeindex
//	    00000000000000004711.log         active segment (name = its first offset)
//
// A .log file holds Kafka's on-disk batch format exactly as a fetch returns
// it, base offsets assigned:
//
//	+------------+-------------+---------------------+-------+-----+------------+-----
//	| baseOffset | batchLength | partitionLeaderEpoch| magic | crc | attributes | ... records
//	| int64      | int32       | int32               | int8=2|u32  | int16      |
//	+------------+-------------+---------------------+-------+-----+------------+-----
//	 <------------- 12 + batchLength bytes per batch; the CRC-32C covers attributes.. ---->
//
// .index entries are (int32 offset-base, int32 position), one per
// IndexIntervalBytes of log; .timeindex entries are (int64 max timestamp so
// far, int32 offset-base). Both are kept in memory for every segment; the
// files mark a segment as sealed and durable (see recovery).
//
// # Durability
//
// An append is written (pwrite) at the log end under the partition lock,
// then the partition is handed to the engine's one syncer goroutine. A sync
// cycle records each dirty partition's log end, fdatasyncs its files (and
// its directory after a roll), and only then moves the high watermark to the
// recorded end and calls done(nil) for the appends below it. Since done(nil)
// and every read are gated on the high watermark, and the high watermark
// only moves past bytes whose fdatasync returned, an acknowledged or visible
// record is on stable storage. Appends arriving during a cycle wait for the
// next one: group commit with no timer. A failed write or sync cuts the
// files back to the high watermark and fails every append above it with
// ErrStorage, so nothing unacknowledged is ever visible or acknowledged;
// later appends try again. With Durability "none" the high watermark moves
// right after the write and syncs happen in the background.
//
// # Recovery
//
// Open reads every segment's batch headers to rebuild the indexes and the
// producer state (the last five batches of each producer id). Segments
// without index files — the active one at least — are validated batch by
// batch (CRC-32C and record walk); the log is cut at the first bad batch
// and later segments are removed. What remains is fdatasynced, so the high
// watermark starts at the log end.
//
// # Not yet here
//
// Retention and the log start offset moving, compaction, producer-state
// snapshots (recovery reads all headers), loading the .index files instead
// of rebuilding, a tail cache, and the shared write-ahead log with direct
// I/O through io_uring all come in later issues.
package engine
