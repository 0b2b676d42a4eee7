package engine

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ringtail/ringtail/vfs"
)

// Errors returned by the engine. The network layer maps each to a Kafka error code.
var (
	ErrCorruptMessage           = errors.New("engine: corrupt message")                     // CORRUPT_MESSAGE (2)
	ErrMessageTooLarge          = errors.New("engine: message too large")                   // MESSAGE_TOO_LARGE (10)
	ErrOutOfOrderSequence       = errors.New("engine: out of order sequence number")        // OUT_OF_ORDER_SEQUENCE_NUMBER (45)
	ErrInvalidProducerEpoch     = errors.New("engine: invalid producer epoch")              // INVALID_PRODUCER_EPOCH (47)
	ErrUnsupportedMagic         = errors.New("engine: unsupported record magic")            // UNSUPPORTED_FOR_MESSAGE_FORMAT (43)
	ErrInvalidRecord            = errors.New("engine: invalid record")                      // INVALID_RECORD (87)
	ErrInvalidTimestamp         = errors.New("engine: invalid timestamp")                   // INVALID_TIMESTAMP (32)
	ErrOffsetOutOfRange         = errors.New("engine: offset out of range")                 // OFFSET_OUT_OF_RANGE (1)
	ErrStorage                  = errors.New("engine: storage error")                       // KAFKA_STORAGE_ERROR (56)
	ErrClosed                   = errors.New("engine: closed")                              // NOT_LEADER_OR_FOLLOWER / storage error
	ErrTransactionalUnsupported = errors.New("engine: transactional batches not supported") // TRANSACTIONAL_ID_AUTHORIZATION? -> INVALID_RECORD
)

// Durability modes.
const (
	DurabilityFsync = "fsync" // default: acknowledge after the WAL write is durable (fdatasync completed)
	DurabilityNone  = "none"  // acknowledge after the segment write(2) only; for people who trade safety for speed
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
	// OnDurable, when set, is called each time a partition's durable end advances, outside the
	// partition's lock, in order, before the done callbacks of the appends it covers.
	OnDurable func(p *Partition, durableEnd int64)
	// Now returns the wall clock in milliseconds (LogAppendTime, retention.ms); nil means time.Now.
	Now func() int64
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// PartitionConfig holds the per-topic settings the log enforces.
type PartitionConfig struct {
	MaxMessageBytes      int32     // max.message.bytes: largest record batch accepted (default 1048588)
	MessageTimestampType string    // "CreateTime" (default) or "LogAppendTime"
	CompressionType      string    // compression.type: "producer" (default: store as produced), or none|gzip|snappy|lz4|zstd (recompress)
	Retention            Retention // which old segments to delete (retention.go); the zero value keeps all
	SegmentMs            int64     // segment.ms: roll the active segment once its first batch is this old; 0: never
}

// PartitionSpec describes a partition that must exist when the engine opens.
type PartitionSpec struct {
	TopicPartition
	TopicID [16]byte
	Config  PartitionConfig
}

// AppendResult is what a successful Append tells the producer.
type AppendResult struct {
	BaseOffset     int64 // offset of the first record of the first batch appended
	LogAppendTime  int64 // ms; -1 unless the topic uses LogAppendTime
	LogStartOffset int64
	Duplicate      bool // an idempotent retry: BaseOffset is the original batch's offset, nothing was written
}

// ReadResult is what a Read returns.
type ReadResult struct {
	Records        []byte // whole record batches, as stored
	HighWatermark  int64
	LogStartOffset int64
}

// The API (engine.go, partition.go, read.go):
//
//	Open(cfg Config, specs []PartitionSpec) (*Engine, error)   recover every partition listed, remove directories of partitions not listed
//	(*Engine).Close() error                                    stop appends, last sync, close; still pending appends fail with ErrClosed
//	(*Engine).CreatePartition(spec) (*Partition, error)         create (or open, if it exists with the same topic ID) a partition log
//	(*Engine).DeletePartition(tp) error                        close and remove a partition's files
//	(*Engine).Partition(tp) *Partition                         the open partition, or nil
//	(*Engine).Partitions() []*Partition
//
// Partition:
//
//	Append(records []byte, done func(error)) (AppendResult, error)
//	                              validate, assign offsets, write, queue for sync; on a nil error done(err) runs
//	                              exactly once, in append order, when durable (nil) or dropped (ErrStorage, ErrClosed)
//	Read(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error)
//	                              batches from the batch containing offset, up to maxBytes (at least one batch if minOne)
//	HighWatermark() int64         next offset after the last durable record
//	LogStartOffset() int64
//	LogEndOffset() int64          next offset to assign (written, maybe not durable)
//	Changed() <-chan struct{}     a channel closed the next time the high watermark advances
//	OffsetForTime(ts int64) (offset, timestamp int64, ok bool)
//	                              first batch whose max timestamp >= ts (its base offset and max timestamp)
//	MaxTimestamp() (offset, ts int64)
//	                              largest batch max timestamp and that batch's last offset; -1, -1 when empty
//	TopicID() [16]byte, TopicPartition() TopicPartition, Config() PartitionConfig, SetConfig(PartitionConfig)
