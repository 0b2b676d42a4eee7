// Package group is Ringtail's consumer-group coordinator for the classic
// rebalance protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
// OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and
// OffsetDelete. It owns group membership, the group state machine
// (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead) and
// committed offsets. It also runs the KIP-848 consumer protocol
// (ConsumerGroupHeartbeat, ConsumerGroupDescribe; consumer.go, with its
// server-side assignors in assignor.go and its records in
// records_consumer.go), whose groups share the id space, the offsets and
// __consumer_offsets with the classic ones.
//
// It is a pure, deterministic state machine in the etcd-raft habit: no
// sockets, no goroutines, no clocks, no I/O. Time is a value passed into
// every call. Requests go in as decoded kmsg structs; what comes out is a
// Ready: responses to send and records to persist. A thin loop in the
// network layer does the I/O. It must not be used from two goroutines at
// once: the caller serializes every call.
//
// # Driving it
//
// Every method takes a ReplyID, an opaque token the caller maps back to
// the connection and request waiting for an answer, and returns a Ready:
//
//	type Ready struct {
//		Send    []Output // {Reply ReplyID; Response kmsg.Response}: write now
//		Records []Record // append to __consumer_offsets, in order
//		Batch   BatchID  // non-zero iff Records is non-empty
//	}
//
// Send may hold responses to other requests than the one just handled:
// JoinGroup and SyncGroup responses are parked until the rebalance
// completes, and come out of whichever call completes it (another member's
// JoinGroup, a LeaveGroup, a Tick, a Persisted).
//
// Responses that depend on a write (OffsetCommit, the SyncGroup responses
// that complete a rebalance, a static member's JoinGroup that replaces the
// old member id, DeleteGroups, OffsetDelete) are never in the Ready that
// carries their records. The caller appends Records (one batch, in order)
// to __consumer_offsets and, once the append is durable or has failed,
// calls Persisted(now, Batch, err). That call returns the held responses:
// on success with no error, on failure with the error Kafka maps the
// append error to (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, ...).
// Batches must be reported in the order they were returned. Until then,
// an OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for the
// partitions being written, and a plain OffsetFetch shows the previous
// committed offset. Records with no dependent response (group metadata
// when a group becomes Empty, tombstones from offset expiry) still get a
// Batch; report it the same way.
//
// Deadlines live in one min-heap keyed by time: a member's session, a
// group's join phase (rebalance timeout, or the initial rebalance delay),
// the sync phase (members that never send SyncGroup are removed after the
// rebalance timeout) and offset retention. Tick(now) pops only expired
// entries; NextDeadline says when the next one is due. A heartbeat is one
// heap fix, O(log n).
//
// Every parked request is answered exactly once: by the rebalance, by an
// error when its member is removed, fenced or replaced by a second request
// from the same member, or by Persisted. Nothing is parked forever as long
// as the caller keeps calling Tick and Persisted.
//
// # What Kafka behaviour is kept
//
//   - Member ids are minted by the coordinator ("clientID-incarnation-n").
//     JoinGroup v4+ without a member id (and without group.instance.id)
//     gets MEMBER_ID_REQUIRED with the id to use; the id is pending for a
//     session timeout, and a rebalance waits for pending ids to join.
//   - Protocol selection: the protocols every member supports, one vote per
//     member for its most preferred; ties go to the earliest member's order.
//   - Static members (group.instance.id, v5+) rejoining with an empty member
//     id get a new id that fences the old one (FENCED_INSTANCE_ID). In a
//     Stable group whose selected protocol would not change, there is no
//     rebalance: the group metadata is persisted and the member gets the
//     current generation, and SyncGroup returns its old assignment. v9+
//     leaders get the member list with SkipAssignment.
//   - The initial rebalance delay applies when an Empty group gets its first
//     member; each new member extends it, bounded by the rebalance timeout.
//   - OffsetCommit with generation -1 and no member id is accepted only
//     while the group is Empty (a "simple" consumer, which creates the
//     group if needed).
//   - Offset retention: an Empty group with a protocol type loses all its
//     offsets retention after it became Empty; a group without one (simple
//     consumers) loses each offset retention after its commit. An Empty
//     group with nothing left is deleted (tombstoned). Kafka's expiry of
//     unsubscribed topics' offsets in Stable groups is not done.
//   - OffsetCommit/OffsetFetch v10 address topics by id, which this package
//     does not resolve: advertise them up to v9.
//
// # Record encoding (__consumer_offsets)
//
// Records use Kafka's own schemas (kmsg's generated structs), so tools that
// read the topic (Burrow, kminion, kafka-console-consumer's
// OffsetsMessageFormatter) understand it. A key starts with its int16
// version, which names the record type; a nil value is a tombstone, and
// compaction is by key, so the key holds exactly the identity:
//
//	key v1 OffsetCommitKey    group, topic, partition  → OffsetCommitValue v3
//	                                                     (offset, leader epoch,
//	                                                     metadata, commit time)
//	key v2 GroupMetadataKey   group                    → GroupMetadataValue v3
//	                                                     (protocol type, generation,
//	                                                     protocol, leader, state time,
//	                                                     members with instance ids)
//	keys v3–v8                consumer-protocol groups (records_consumer.go)
//
// These are the versions Kafka 2.3 to 4.x write. Keys v0 and values v0 to v4
// are read too. An Empty group has a null protocol and leader, as in Kafka.
// Records of the private encoding of older Ringtail versions (keys starting
// with 1 or 2, see records_legacy.go) are read as well; Canonical rewrites
// them, and the broker's compaction of a partition that holds any runs at
// load, so a data directory moves to Kafka's schemas on its first start.
//
// A group record is written when a rebalance completes (the leader's
// SyncGroup), when a group becomes Empty (its generation still advances),
// and when a static member's new id replaces the old one. Deleting a group
// writes tombstones for its offsets and then its group key. A reader that
// meets an unknown key kind or value version fails with ErrCorrupt rather
// than guess.
//
// Replay(now, records) rebuilds a fresh coordinator from the log at
// startup: a group with members is Stable with its last assignment and
// session deadlines counted from now (members that are gone will time out
// and cause a rebalance), a group without members is Empty, and offsets are
// as last written.
package group
