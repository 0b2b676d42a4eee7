package engine

import (
	"errors"
	"log/slog"
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
	DurabilityFsync = "fsync" // default: acknowledge after fdatasync completed
	DurabilityNone  = "none"  // acknowledge after write(2) only; for people who trade safety for speed
)

// Config configures an Engine.
type Config struct {
	DataDir            string
	Durability         string // DurabilityFsync (default) or DurabilityNone
	SegmentBytes       int64  // roll a new segment beyond this size; default 256 MiB
	IndexIntervalBytes int    // sparse index granularity; default 4096
	Logger             *slog.Logger
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// PartitionConfig holds the per-topic settings the log enforces.
type PartitionConfig struct {
	MaxMessageBytes      int32  // max.message.bytes: largest record batch accepted (default 1048588)
	MessageTimestampType string // "CreateTime" (default) or "LogAppendTime"
	CompressionType      string // compression.type: "producer" (default: store as produced), or none|gzip|snappy|lz4|zstd (recompress)
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

// Engine owns every partition log in one data directory.
//
//	Open(cfg, specs)              recover every partition listed, remove directories of partitions not listed
//	Close()                       flush and close; pending appends fail with ErrClosed
//	CreatePartition(spec)         create (or open, if it exists with the same topic ID) a partition log
//	DeletePartition(tp)           close and remove a partition's files
//	Partition(tp)                 the open partition, or nil
//
// Partition:
//
//	Append(records, done)         validate, assign offsets, write, queue for sync; done(err) runs once when durable
//	Read(offset, maxBytes, minOne) batches from the batch containing offset, up to maxBytes (at least one batch if minOne)
//	HighWatermark()               next offset after the last durable record
//	LogStartOffset()
//	Changed()                     a channel closed the next time the high watermark advances
//	OffsetForTime(ts)             first offset whose batch max timestamp >= ts
//	MaxTimestamp()                offset and timestamp of the record with the largest timestamp
