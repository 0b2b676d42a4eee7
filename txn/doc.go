// Package txn is the transaction coordinator (Kafka's KIP-98 coordinator side): a pure state
// machine per __transaction_state partition, in the style of group/. It holds each
// transactional id's producer id and epoch, its state (Empty, Ongoing, PrepareCommit,
// PrepareAbort, CompleteCommit, CompleteAbort, Dead) and the partitions its open transaction
// wrote to; it answers InitProducerId, AddPartitionsToTxn (including KIP-890's VerifyOnly),
// AddOffsetsToTxn, EndTxn, DescribeTransactions and ListTransactions; it aborts transactions
// open longer than their transaction.timeout.ms (bumping the epoch, which fences the
// producer).
//
// No sockets, no clocks, no goroutines: time is passed in, and every call returns a Ready —
// responses to send, records to persist in __transaction_state (Kafka's TxnMetadataKey and
// TxnMetadataValue) and marker writes to start. Responses that depend on a write are held
// until the host reports Persisted; a transaction completes when the host reports its
// markers with MarkersWritten. A new leader of the partition replays its records (Replay)
// and calls Loaded, which sends the markers of transactions caught between prepare and
// complete.
//
// It must not import the broker or the engine: the host (broker/txn*.go) does the I/O.
package txn
