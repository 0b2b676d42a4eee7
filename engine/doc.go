// Package engine owns the partition logs of one data directory: record
// batch validation, offset assignment, idempotent-producer deduplication,
// segments with their sparse offset and time indexes, fetch reads, the
// shared write-ahead log whose group-commit sync decides when an append is
// acknowledged, the checkpointer behind it, and crash recovery. It knows nothing of sockets or Kafka requests (net/ does)
// and does all file I/O through vfs.FS.
//
// # On-disk layout
//
//	<data>/
//	  wal/
//	    00000000000000000007.wal         preallocated WAL files (wal.Log), numbered in write order
//	    checkpoint                       where replay starts (written to checkpoint.tmp, synced, renamed)
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
// # Durability: the WAL
//
// An append is validated, given offsets and written (pwrite, page cache
// only) at the log end under the partition lock; still under that lock the
// same bytes are queued to the data directory's one WAL (wal.Log), so the
// WAL holds each partition's appends in offset order. The WAL writer
// goroutine takes everything queued, copies it into one 4 KiB-aligned
// off-heap buffer and hands it to a free lane, which makes it durable with
// one operation (io_uring: WRITE_FIXED flagged RWF_DSYNC on an O_DIRECT
// descriptor, one ring per lane, or WRITE_FIXED linked to FSYNC(DATASYNC)
// where the kernel refuses the flag; portable: pwrite + fdatasync).
// Two lanes (Config.WALInFlight) let a cycle start while the previous one
// syncs, so a record arriving mid-sync waits for one sync, not two. Cycles
// complete strictly in order: cycle N+1's completions never run before N's,
// and when N fails, N+1 fails too whatever its own result. On completion
// the appends' completions run in order: each advances its partition's high
// watermark to its end and calls done(nil). Since done(nil) and every read
// are gated on the high watermark, an acknowledged or visible record is in
// the WAL on stable storage. One sync per cycle covers every partition that
// wrote in it: group commit with no timer, a lone append pays one sync.
//
// WAL record framing (package wal), every record on an 8-byte boundary:
//
//	+-------+--------+--------+---------+------+--------+----------------------+-----------+
//	| magic | crc32c | seq    | length  | kind | zero   | payload (length)     | zero pad  |
//	| u32 LE| u32 LE | u64 LE | u32 LE  | u8   | 11 B   |                      | to 8 B    |
//	+-------+--------+--------+---------+------+--------+----------------------+-----------+
//	 magic "RWAL"; CRC-32C over bytes 8..32 and, for data records (kind 1), the payload;
//	 pad records (kind 2) carry the next data record's seq and fill a cycle to the next
//	 4 KiB boundary (fewer than 32 bytes left are zeros); seq increases by one per data record
//
// The engine's payload is the topic id (16 bytes), the partition (int32 BE)
// and the base offset (int64 BE) of the first batch, then the batches
// exactly as written to the segment.
//
// WAL files are 64 MiB (Config.WALFileBytes), zero-filled once when created
// so that overwriting them converts no unwritten extents and fdatasync is a
// pure data flush, without an ext4 journal commit; that is most of the win
// over syncing the (growing) segment files. When no recycled file is
// available, a preparer goroutine zero-fills the next one in the background
// (at open, and when the writer passes the middle of its file), 2 MiB per
// fdatasync, as wal/prepared.tmp (removed at open if a crash left it); a
// file switch is then a rename (about 0.5 ms instead of 120 ms and more). A cycle never rewrites a block
// holding acknowledged data: each starts on a 4 KiB boundary after the last.
//
// Failures: a WAL write or sync error fails the cycle's records (and those
// of any cycle in flight after it); each
// callback rolls its partition back to the high watermark as before (files
// cut, pending appends fail with ErrStorage, producer state rewound, later
// appends tried again). Records of that partition still queued from before
// the rollback are dropped by the WAL's validity check (generation
// compare, wal.Log.AppendChecked) instead of being written, and the WAL
// zeroes the failed extent (and syncs) before it writes anything else, so
// a failed append never reappears at recovery and no stale record lands
// beyond a gap. A segment
// write error rolls back the partition at once, as before. With Durability
// "none" the high watermark moves right after the segment write; the WAL is
// still written, and its errors are only logged.
//
// # Checkpoints
//
// Segments are not synced per cycle, but an active segment that gained
// 512 KiB since the last time is handed to the kernel's writeback by the
// checkpointer goroutine (sync_file_range WRITE, no wait, OSFS only), so
// the checkpoint's fdatasyncs find little dirty data instead of flushing
// ~16 MiB at once while WAL syncs queue behind them. When the WAL has grown by
// Config.CheckpointBytes (default a quarter of a WAL file) since the last
// checkpoint, and on Close, the checkpointer takes the WAL's committed
// position P (every record before P was written to its segment before it was
// queued), fdatasyncs every segment file written since the last checkpoint
// (and directories whose entries changed), then durably records P in
// wal/checkpoint and lets the WAL reuse files wholly before P (renamed to
// the next number; their stale records have older sequence numbers). Sealed
// segments get their .index/.timeindex files once synced by a checkpoint
// and wholly below the high watermark.
//
// # Recovery
//
// Open reads every segment's batch headers to rebuild the indexes and the
// producer state (the last five batches of each producer id). Segments
// without index files — the active one at least — are validated batch by
// batch (CRC-32C and record walk); the log is cut at the first bad batch
// and later segments are removed. Then the WAL is replayed from the
// checkpoint, in sequence order; per record:
//
//   - unknown partition (deleted, or another topic id): skipped;
//   - base offset == log end: appended to the segment (rolling as usual);
//   - base offset < log end: if the log holds the same bytes, skipped;
//     otherwise the later record wins: the log is cut back to that batch
//     (the segment held a rolled-back append whose sync beat the truncation)
//     and the record appended;
//   - base offset > log end: a gap, logged as an error, and replay stops
//     for that partition.
//
// The WAL reader stops at the first record whose magic, CRC or sequence
// number does not match (trying offset 0 of the next file once), removes
// the files after it, and the writer continues in a fresh file, so a torn
// tail is never followed by live records. Recovery time and the records
// replayed are logged. Finally every recovered segment is fdatasynced and a
// fresh checkpoint written, so the high watermark starts at the log end.
//
// # Measured choices
//
// Padding each cycle to 4 KiB (instead of rewriting the partial tail block)
// costs up to 4 KiB of WAL per cycle but keeps acknowledged blocks
// immutable, which is what lets recovery trust any block it reads. The
// completions of a cycle run on the lane that finished it (one cycle at a
// time, in order) while the writer may already build the next. Two cycles
// in flight against one, seed workload, same run: 75.7K/80.2K msg/s against
// 68.5K/71.6K, p50 1.43/1.33 ms against 1.57/1.48 ms, p99 about equal.
// Numbers: BenchmarkWAL and BenchmarkRawWriteSync4K in wal,
// BenchmarkAppendParallel here.
//
// # Retention
//
// retention.go deletes whole sealed segments, oldest first, by time or size
// (Partition Config.Retention), only once a checkpoint has made them durable
// and they lie below the high watermark; the log start offset becomes the
// first kept segment's base, which recovery reads back from the directory.
// An active segment wholly past retention.ms is rolled (and a checkpoint
// requested) so a later pass can delete it; segment.ms rolls the active
// segment on append once its first batch's timestamp is that old.
// DeleteRecords (delete_records.go) moves the log start offset anywhere up
// to the high watermark, persisted in the partition's log-start-offset file,
// and lets retention delete the whole segments below it.
//
// # Not yet here
//
// Compaction, producer-state snapshots (recovery reads all
// headers), loading the .index files instead of rebuilding, and a tail
// cache.
package engine
