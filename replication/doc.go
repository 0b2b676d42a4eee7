// Package replication keeps a partition's replicas in step, in Kafka's ISR model: the leader
// sends its log to the followers, the followers append it durably and acknowledge, and the
// leader derives from the acknowledgements the high watermark (what acks=all answers and
// consumers read up to) and the ISR changes it asks the controller for.
//
// Its core is the Tracker, a pure per-partition state machine in the etcd-raft habit (see
// etcd-io/raft tracker/progress.go and quorum/majority.go): no goroutines, no clocks, no I/O,
// no locks. Time is a value passed into every call and the caller serialises the calls. The
// leader and follower drivers, which own the connections, the reads and the appends, live
// beside it and feed it; nothing in the tracker may block or reach outside its own state.
//
// # The tracker's rules
//
//   - The high watermark is the minimum durable end over the maximal ISR (the committed ISR,
//     the members of a pending proposal and the leader itself). A member that has not
//     acknowledged since the tracker started holds it back. It advances only while the
//     committed ISR has at least min.insync.replicas members (KIP-966), and never goes down.
//   - A follower is caught up when its log end reaches the leader's; one whose log end reaches
//     the leader's log end as of its previous acknowledgement was caught up at that
//     acknowledgement's time (Kafka's ReplicaState.lastCaughtUpTimeMs); one at the leader's
//     log end stays caught up until the leader's log grows past it, so an idle follower need
//     not acknowledge. Committed ISR members start caught up when the tracker starts.
//   - A committed member not at the leader's log end and not caught up for longer than
//     replica.lag.time.max.ms is proposed for removal; the leader never is. A replica outside
//     the ISR is proposed for addition once its durable end reaches both the high watermark
//     and the leader epoch's start offset, it is caught up by the rule above, and it has
//     acknowledged since it last left the ISR.
//   - One proposal is in flight at a time, made against the committed partition epoch (the
//     controller applies it as a compare-and-set). It ends when the caller reports it failed,
//     or when the metadata brings any later partition epoch. Shrinks go first and alone;
//     followers are added one per proposal, taking turns.
//
// The tracker takes the follower's offsets on trust: checking a follower's log against the
// leader's epochs (the DivergingEpoch rule) is the driver's job, before it reports progress.
//
// # The drivers
//
//   - wire.go: the frames of the stream, one TCP connection per follower and leader pair, every
//     partition between them on it.
//   - divergence.go: the DivergingEpoch rule, pure: checkFetch on the leader, truncationTarget
//     on the follower (script tests in testdata/divergence, on real engines).
//   - leader.go (Server): accepts followers on the replication listener, checks each fetch,
//     streams spans of whole batches from the segment files (sendfile.go: sendfile(2), no copy
//     through user space), above the high watermark, as soon as they are appended.
//   - follower.go (Fetchers): one connection per leader, appends what it receives through the
//     node's WAL, acknowledges its durable end, cuts its log where the leader says it parts.
//
// The broker (broker/replication.go) owns the trackers, feeds them, applies the high
// watermark they yield and proposes their ISR changes.
package replication
