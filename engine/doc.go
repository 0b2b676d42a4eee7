// Package engine owns the partition logs of one data directory: record
// batch validation, offset assignment, idempotent-producer deduplication,
// segments with their sparse offset and time indexes, fetch reads, the
// leader-epoch cache, truncation, and what it puts in the shared
// write-ahead log (package wal) whose group-commit sync decides when an
// append is durable: the payload codec, the replay policy and the
// checkpointer behind it. It knows nothing of sockets, Kafka requests or
// other replicas, and does all file I/O through vfs.FS.
//
// Files, by job:
//
//	api.go            configuration, errors, result types, the API summary
//	engine.go         Open, Close, partitions created and deleted
//	partition.go      Partition: the three offsets, rollback, completions
//	append.go         leader append (Append), plain append (writeLocked/queueLocked), AppendReplicated
//	truncate.go       TruncateTo
//	epochs.go         the leader-epoch cache and its checkpoint file
//	read.go           Read, OffsetForTime, MaxTimestamp
//	walpayload.go     the WAL payload codec: data and truncation records
//	replay.go         the replay policy
//	checkpointer.go   checkpoints, write-behind, wal/checkpoint
//	recover.go        opening and scanning a partition directory
//	retention.go, delete_records.go   moving the log start
//	segment.go, producer.go           segments and indexes; idempotent producer state
//	snapshot.go, cleanshutdown.go     producer-state snapshots; the clean-shutdown marker
//	cleaner_plan.go, cleaner.go       log compaction: the pure planner and batch rules; the cleaner and its swap
//	txn.go                            transactions: markers, last stable offset, aborted-transaction index
//
// # Three offsets
//
// Each partition has, in this order (logStart <= hw <= durableEnd <=
// logEnd; the last three are checked after every change in invariant
// builds):
//
//   - the log end offset (LogEndOffset): the next offset to assign;
//     everything below it is written to the segment;
//   - the durable end (DurableEnd): the offset after the last locally
//     durable batch, whose WAL cycle's fdatasync completed (with Durability
//     "none", whose write returned). A rollback after a storage error never
//     goes below it. Append's done(nil) means an append is below it;
//   - the high watermark (HighWatermark): consumers read below it. The
//     owner decides where it is: SetHighWatermark raises it, clamped to the
//     durable end and never backwards, or, for a partition whose only
//     in-sync replica is this node (every partition of a single node),
//     SetFollowDurableEnd (PartitionSpec.FollowDurableEnd) makes it move
//     with the durable end under the lock each advance holds anyway — a
//     second lock per WAL cycle on the completion path, contended by the
//     appender's segment write, measurably slowed seed. Config.OnDurable
//     tells the owner of every advance of the durable end, before the done
//     callbacks of the appends it covers; in a cluster the leader answers
//     with what its in-sync replicas hold durably. TruncateTo is the only
//     thing that lowers it.
//
// # On-disk layout
//
//	<data>/
//	  wal/
//	    00000000000000000007.wal         preallocated WAL files (wal.Log), numbered in write order
//	    checkpoint                       where replay starts (written to checkpoint.tmp, synced, renamed)
//	  clean-shutdown                     written last by a clean Close, removed first by Open (cleanshutdown.go)
//	  <topic>-<partition>/
//	    partition.metadata               "version: 0\ntopic_id: <base64url>\n"
//	    leader-epoch-checkpoint          "0\n<n>\n<epoch> <start offset>\n"... (epochs.go)
//	    log-start-offset                 a DeleteRecords log start: int64 LE + CRC-32C
//	    00000000000000000000.log         sealed segment: record batches back to back
//	    00000000000000000000.index       written once the segment is sealed and durable
//	    00000000000000000000.timeindex
//	    00000000000000000000.txnindex    aborted transactions whose marker is in the segment (txn.go)
//	    00000000000000004711.snapshot    producer state and epoch cache below offset 4711 (snapshot.go)
//	    00000000000000004711.log         active segment (name = its first offset)
//
// A .log file holds Kafka's on-disk batch format exactly as a fetch returns
// it, base offsets assigned, partitionLeaderEpoch the leader epoch of the
// append (a leader append overwrites what the producer sent, as Kafka
// does; the field is not covered by the CRC):
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
// An append is validated, given offsets and added at the log end under the
// partition lock; still under that lock the same bytes are queued to the data
// directory's one WAL (wal.Log), so the WAL holds each partition's appends in
// offset order. The segment file write is deferred: the first completion of a
// WAL cycle writes all of the partition's appends since the last write with
// one pwritev (page cache only) before it moves the durable end, so a cycle
// costs a partition one segment write, not one per append, and nothing reads
// a deferred byte (reads stop at the high watermark; the checkpoint, a roll, a
// truncation and a follower's catch-up write them first). The WAL writer
// goroutine takes everything queued, copies it into one 4 KiB-aligned
// off-heap buffer and hands it to a free lane, which makes it durable with
// one operation (io_uring: WRITE_FIXED flagged RWF_DSYNC on an O_DIRECT
// descriptor, one ring per lane, or WRITE_FIXED linked to FSYNC(DATASYNC)
// where the kernel refuses the flag; portable: pwrite + fdatasync).
// Two lanes (Config.WALInFlight) let a cycle start while the previous one
// syncs, so a record arriving mid-sync waits for one sync, not two. Cycles
// complete strictly in order: cycle N+1's completions never run before N's,
// and when N fails, N+1 fails too whatever its own result. On completion
// the appends' completions run in order: each advances its partition's
// durable end to its end, then (outside the partition lock, in that order)
// OnDurable runs and done(nil) is called. Since done(nil) follows the
// durable end and reads stop at the high watermark, which never passes it,
// an acknowledged or visible record is in the WAL on stable storage. One
// sync per cycle covers every partition that wrote in it: group commit with
// no timer, a lone append pays one sync.
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
// The engine's payload (walpayload.go) is the topic id (16 bytes), the
// partition (int32 BE) and an offset (int64 BE), then a body:
//
//   - data: the offset is the base offset of the first batch, the body the
//     batches exactly as written to the segment (always at least one);
//   - truncation: the offset is the log end TruncateTo cut back to, the
//     body the one byte 1. A body of one byte can never be batches, so
//     data records written before truncation records existed decode as
//     they always did; the WAL's record kinds are untouched.
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
// callback rolls its partition back to the durable end (files
// cut, pending appends fail with ErrStorage, producer state rewound, later
// appends tried again). Records of that partition still queued from before
// the rollback are dropped by the WAL's validity check (generation
// compare, wal.Log.AppendChecked) instead of being written, and the WAL
// zeroes the failed extent (and syncs) before it writes anything else, so
// a failed append never reappears at recovery and no stale record lands
// beyond a gap. A segment
// write error rolls back the partition at once, as before.
//
// With Durability "none" the WAL holds nothing of a partition: an append is
// durable, and done, once written to its segment file (the page cache, which
// a killed process does not lose), and truncations and resets change the
// files without a record (their crash states are logs recovery keeps only up
// to a gap: truncate.go, reset.go). A checkpoint runs every CheckpointBytes
// appended (Engine.noneWrote), so a power cut loses what the kernel had not
// written back since the last one, as with Kafka's default flush settings.
// Writing the WAL behind the ack, as before, cost about half the broker's
// CPU per message at seed and raised p99 3-4x (docs/benchmarks.md).
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
// and wholly below the high watermark. A checkpoint also writes the
// leader-epoch-checkpoint of every partition whose epoch cache changed.
//
// # Truncation and leader epochs
//
// A leader append stamps the partition's leader epoch (PartitionSpec,
// SetLeaderEpoch) on every batch; the epoch cache holds (epoch, start
// offset) for every epoch in the log, answers EndOffsetForEpoch (Kafka's
// OffsetForLeaderEpoch) and is truncated with the log at both ends.
// Recovery rebuilds it from the batch headers it reads anyway; the file is
// rewritten when it disagrees.
//
// TruncateTo (truncate.go) plans the cut, refuses appends, fails the
// pending appends beyond it and queues a truncation record; only when that
// record is durable are the files and memory cut (the checkpointer's run
// lock keeps checkpoints out meanwhile), so no file shows a cut whose
// record could be lost. AppendReplicated takes a leader's batches as they
// are, through the same write path and WAL.
//
// # Recovery
//
// Open loads each sealed segment's .index/.timeindex files and verifies
// them (segment.loadIndexFiles: well-formed entries, the last pointing at
// a batch header with its offset, the headers after it ending exactly at
// the file's end) instead of reading every batch header; a segment whose
// files do not verify is validated and its files rewritten. Segments from
// the first sealed one without index files on, and the active one, are
// validated batch by batch (CRC-32C and record walk); the log is cut at the
// first bad batch and later segments are removed. The producer state (the
// last five batches of each producer id) and the epoch cache come from the
// newest producer snapshot that verifies (snapshot.go: written at segment
// rolls once the segment is durable, and at a clean Close) plus the batch
// headers after it, or from every header without one. After a clean stop
// (cleanshutdown.go: a marker Close writes last and Open removes, durably,
// first) the active segment's index files and the snapshot at the log end
// are trusted too: no segment is validated and no header read, and the log
// says "recovery: clean shutdown, replay skipped" (after a crash: "recovery:
// no clean shutdown marker, ..."), with what was read. Then the WAL is
// replayed from the checkpoint (after a clean stop, nothing follows it), in
// sequence order, by the policy in replay.go: a data record of an unknown
// partition, or wholly below the first segment (retention deleted it), is
// skipped; one at the log end is appended; one below it that the log
// already holds is rewritten in place; one whose bytes differ wins over the log from its
// batch start on (the log held a rolled-back append, or bytes from a future
// that later records replay again); a gap stops the partition's replay; a
// truncation record cuts the log and resumes a replay stopped at or after
// its offset.
//
// The WAL reader stops at the first record whose magic, CRC or sequence
// number does not match (trying offset 0 of the next file once), removes
// the files after it, and the writer continues in a fresh file, so a torn
// tail is never followed by live records. Recovery time and the records
// replayed are logged. Finally every recovered segment is fdatasynced and a
// fresh checkpoint written, so the durable end starts at the log end (and
// OnDurable is told); the high watermark starts at the log start.
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
// # Compaction
//
// cleaner_plan.go (pure) and cleaner.go: for cleanup.policy=compact, a cleaner goroutine keeps
// the latest record per key in sealed segments that a checkpoint made durable, wholly below the
// high watermark and below what WAL replay may still rewrite (the durable end taken before the
// last durable checkpoint's WAL position) and the last stable offset. Batches keep their
// offsets; a run of batches whose records all go becomes one empty batch spanning them (the log
// stays contiguous; a follower whose log end falls inside one keeps its part from there on).
// Committed transactional records compact like others, aborted ones go, markers stay;
// tombstones get a KIP-534 delete horizon; the progress persists (cleaner-offset-checkpoint);
// and
// each cleaned segment replaces the old one by a rename (<base>.log.cleaned over <base>.log,
// index files removed before and rewritten after; recovery removes a stray .cleaned file).
// Stored batches are checked with batch.ValidateStored, which accepts offset deltas with gaps.
//
// # Not yet here
//
// A high-watermark checkpoint, and a tail cache. After a crash
// the active segment is still validated whole (bounded by segment.bytes,
// not by the checkpoint interval) and its headers read a second time for
// the producer state.
package engine
