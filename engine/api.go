package engine

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
)

// Errors returned by the engine. The network layer maps each to a Kafka error code.
var (
	ErrCorruptMessage       = errors.New("engine: corrupt message")                // CORRUPT_MESSAGE (2)
	ErrMessageTooLarge      = errors.New("engine: message too large")              // MESSAGE_TOO_LARGE (10)
	ErrOutOfOrderSequence   = errors.New("engine: out of order sequence number")   // OUT_OF_ORDER_SEQUENCE_NUMBER (45)
	ErrInvalidProducerEpoch = errors.New("engine: invalid producer epoch")         // INVALID_PRODUCER_EPOCH (47)
	ErrCoordinatorFenced    = errors.New("engine: transaction coordinator fenced") // TRANSACTION_COORDINATOR_FENCED (52)
	ErrUnsupportedMagic     = errors.New("engine: unsupported record magic")       // UNSUPPORTED_FOR_MESSAGE_FORMAT (43)
	ErrInvalidRecord        = errors.New("engine: invalid record")                 // INVALID_RECORD (87)
	ErrInvalidTimestamp     = errors.New("engine: invalid timestamp")              // INVALID_TIMESTAMP (32)
	ErrOffsetOutOfRange     = errors.New("engine: offset out of range")            // OFFSET_OUT_OF_RANGE (1)
	ErrStorage              = errors.New("engine: storage error")                  // KAFKA_STORAGE_ERROR (56)
	ErrClosed               = errors.New("engine: closed")                         // NOT_LEADER_OR_FOLLOWER / storage error
)

// Durability modes.
const (
	DurabilityFsync = "fsync" // default: acknowledge after the WAL write is durable (fdatasync completed)
	DurabilityNone  = "none"  // acknowledge after the segment write(2), no WAL; a power cut loses what was not synced since the last checkpoint
)

// Config configures an Engine.
type Config struct {
	DataDir            string
	Durability         string // DurabilityFsync (default) or DurabilityNone
	SegmentBytes       int64  // roll a new segment beyond this size; default 256 MiB
	IndexIntervalBytes int    // sparse index granularity; default 4096
	Logger             *slog.Logger

	// FS is the file system every read, write and sync goes through;
	// nil means vfs.OSFS{}. Tests pass a errorfs.FS.
	FS vfs.FS
	// WALIO is wal.io: "auto" (default: io_uring, else the portable
	// pwrite+fdatasync writer, logged once), "uring" or "portable".
	// With an FS other than vfs.OSFS, auto means portable.
	WALIO string
	// WALFileBytes is the size of each preallocated WAL file; default 64 MiB.
	WALFileBytes int64
	// CheckpointBytes: a checkpoint runs when the WAL has grown by this
	// much since the last one; default WALFileBytes/4.
	CheckpointBytes int64
	// WALInFlight is how many WAL cycles (write + fdatasync) may be in
	// flight at once; completions still run in order. Default
	// wal.DefaultInFlight; 1 is the strictly sequential writer.
	WALInFlight int
	// OnWALCycle, when set, is told about every WAL cycle (wal.Options.OnCycle).
	OnWALCycle func(records int, bytes int64, took time.Duration, err error)
	// RetentionCheckInterval is how often old segments are deleted by their partition's
	// Retention (Kafka's log.retention.check.interval.ms); default
	// DefaultRetentionCheckInterval, negative turns the timer off (EnforceRetention still works).
	RetentionCheckInterval time.Duration
	// ProducerIDExpiration is producer.id.expiration.ms: a partition forgets a producer whose
	// last batch is this old, by its timestamp, and which has no transaction open (see
	// producers.expire), on each retention check. 0 means DefaultProducerIDExpiration;
	// negative: never.
	ProducerIDExpiration time.Duration
	// Now returns the wall clock in milliseconds (LogAppendTime, retention.ms); nil means time.Now.
	Now func() int64
	// OnDurable is called when a partition's durable end advances (and
	// once when the partition opens, with its recovered durable end):
	// outside the partition's locks, in order per partition, and before the
	// done callbacks of the appends that advance covers. It runs on an
	// engine goroutine (often a WAL lane, in the WAL's completion order) and
	// must not block: it may call any Partition method but TruncateTo, and
	// no Engine method that waits for the WAL (Close). The high watermark moves only by SetHighWatermark: on one
	// node the broker passes func(p, end) { p.SetHighWatermark(end) }; nil
	// leaves the high watermark where it is.
	OnDurable func(p *Partition, durableEnd int64)
	// OnAppend is called after a leader Append wrote new batches (not for a duplicate), on the
	// appender's goroutine and outside the partition's locks, before the write is durable: a
	// leader streams fresh batches to its followers from here. It must not block.
	OnAppend func(p *Partition)
	// OnStorageFailure is called when a storage error made a partition drop appends it had
	// written (a rollback to its durable end) or left a truncation unapplied: under the
	// partition's lock, so it must only record the fact and return. A replica that rolled
	// back may have sent its followers batches it no longer holds; a cluster node stops (as
	// Kafka halts when its last log directory fails) rather than go on leading in the same
	// epoch with followers holding other bytes at the same offsets.
	OnStorageFailure func(p *Partition, err error)
	// RefuseAppendsAfterStorageFailure: once a storage failure rolled a partition back, it
	// takes no more appends (ErrStorage) until the engine is opened again. A cluster node sets
	// it: the check must be made under the partition's lock, or an append that was on its way
	// would land at the rolled-back offsets in the same leader epoch.
	RefuseAppendsAfterStorageFailure bool
	// CleanerInterval is how often the log cleaner looks for partitions to compact
	// (cleaner.go); default DefaultCleanerInterval, negative turns it off (Clean still works).
	CleanerInterval time.Duration
	// CleanerIOBytesPerSecond bounds the cleaner's reads plus writes; 0: unlimited.
	CleanerIOBytesPerSecond int64
	// CleanerKeyMapBytes bounds the memory of a pass's key map (about key bytes plus 48 per
	// key); a pass whose dirty section has more keys cleans part of it. Default
	// DefaultCleanerKeyMapBytes. A single segment's keys are always taken whole.
	CleanerKeyMapBytes int64
	// ReplicaTailBytes bounds the memory all partitions together keep of their latest leader
	// appends for ReplicaTail (tail.go); 0 keeps none.
	ReplicaTailBytes int64
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// PartitionConfig holds the per-topic settings the log enforces, as typed
// values the caller parsed once from the topic's configs.
type PartitionConfig struct {
	MaxMessageBytes int32 // max.message.bytes: largest record batch accepted (default 1048588)
	// LogAppendTime: message.timestamp.type=LogAppendTime (batches get the
	// broker's clock); false is CreateTime.
	LogAppendTime bool
	// Recompress and Compression: compression.type. Recompress false is
	// "producer" (store batches as produced); true stores every batch
	// compressed with Compression (batch.CodecNone for uncompressed).
	Recompress  bool
	Compression batch.Codec
	Retention   Retention // which old segments to delete (retention.go); the zero value keeps all
	SegmentMs   int64     // segment.ms: roll the active segment once its first batch is this old; 0: never
	// SegmentBytes rolls the active segment beyond this size when below the engine's
	// Config.SegmentBytes; 0: the engine's.
	SegmentBytes int64
	Compaction   Compaction // cleanup.policy=compact and its settings (cleaner_plan.go); the zero value compacts nothing
}

// PartitionSpec describes a partition that must exist when the engine opens.
type PartitionSpec struct {
	TopicPartition
	TopicID [16]byte
	Config  PartitionConfig
	// LeaderEpoch is the partition's leader epoch when it opens (see
	// Partition.SetLeaderEpoch); 0 on a single node.
	LeaderEpoch int32
	// FollowDurableEnd: the high watermark moves with the durable end (see
	// Partition.SetFollowDurableEnd), from the moment the partition opens.
	FollowDurableEnd bool
}

// AppendResult is what a successful Append tells the producer.
type AppendResult struct {
	BaseOffset     int64 // offset of the first record of the first batch appended
	EndOffset      int64 // offset after the last batch appended; for a pure duplicate, after the original
	LogAppendTime  int64 // ms; -1 unless the topic uses LogAppendTime
	LogStartOffset int64
	Duplicate      bool // an idempotent retry: BaseOffset is the original batch's offset, nothing was written
}

// ReadResult is what a Read returns.
type ReadResult struct {
	Records          []byte // whole record batches, as stored, all below the high watermark
	HighWatermark    int64  // the high watermark the read was served under
	LastStableOffset int64  // the last stable offset then (txn.go); read_committed reads stop there
	LogStartOffset   int64
	// Aborted lists, for a read_committed read, the aborted transactions
	// overlapping the batches returned (Kafka's AbortedTransactions).
	Aborted []AbortedTxn
}

// The API (engine.go, partition.go, append.go, truncate.go, epochs.go,
// read.go, retention.go, delete_records.go):
//
//	Open(cfg Config, specs []PartitionSpec) (*Engine, error)   recover every partition listed, remove directories of partitions not listed
//	(*Engine).Close() error                                    stop appends, last sync, close; still pending appends fail with ErrClosed
//	(*Engine).CreatePartition(spec) (*Partition, error)         create (or open, if it exists with the same topic ID) a partition log
//	(*Engine).DeletePartition(tp) error                        close and remove a partition's files
//	(*Engine).Partition(tp) *Partition                         the open partition, or nil
//	(*Engine).Partitions() []*Partition
//	(*Engine).EnforceRetention(), Checkpoint() error, CheckpointsStopped() bool
//	(*Engine).WALMode() string, WALFallbackReason() string, WALStats() (cycles, records uint64)
//
// Partition, writing:
//
//	Append(records []byte, done func(error)) (AppendResult, error)
//	                              leader append: validate, deduplicate, assign offsets, stamp the leader epoch, write,
//	                              queue for sync; on a nil error done(err) runs exactly once, in append order, when
//	                              locally durable (nil) or dropped (ErrStorage, ErrClosed)
//	AppendReplicated(records []byte, done func(error)) (AppendResult, error)
//	                              follower append: batches with offsets and epochs set, starting at the log end;
//	                              CRC checked; durable and done as for Append
//	ReplicaSpan(offset int64, maxBytes int, prev *Span) (Span, error)
//	                              the written batches from offset on (above the high watermark too), in one segment
//	                              file, for a leader's replication stream; LastLogEpoch() int32: the last batch's epoch
//	TruncateTo(offset int64) error
//	                              cut the log back to offset (at least the log start), durably recorded in the WAL
//	                              before it returns; lowers the high watermark if it was above
//	DeleteRecordsBefore(offset int64) (int64, error), TrimBefore(offset int64), Roll() error
//
// Partition, offsets (logStart <= HighWatermark <= DurableEnd <= LogEndOffset):
//
//	LogStartOffset() int64        first offset still in the log
//	LogEndOffset() int64          next offset to assign (written, maybe not durable)
//	DurableEnd() int64            offset after the last locally durable batch
//	HighWatermark() int64         consumers read below it; lock-free
//	SetHighWatermark(hw int64) int64
//	                              raise the high watermark, clamped to DurableEnd, never lowered; returns the value in force
//	SetFollowDurableEnd(on bool)  the high watermark moves with the durable end by itself (one in-sync replica)
//
// Partition, leader epochs:
//
//	LeaderEpoch() int32, SetLeaderEpoch(epoch int32)
//	                              what leader appends stamp on their batches; never lowered
//	EndOffsetForEpoch(epoch int32) (foundEpoch int32, endOffset int64)
//	                              OffsetForLeaderEpoch: largest epoch <= epoch and where it ends; -1, -1 when unknown
//
// Partition, reading (below the high watermark):
//
//	Read(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error)
//	                              batches from the batch containing offset, up to maxBytes (at least one batch if minOne)
//	OffsetForTime(ts int64) (offset, timestamp int64, ok bool)
//	                              first record whose timestamp >= ts
//	MaxTimestamp() (offset, ts int64)
//	                              largest batch max timestamp and that batch's last offset; -1, -1 when empty
//	TopicID() [16]byte, TopicPartition() TopicPartition, Config() PartitionConfig, SetConfig(PartitionConfig)
