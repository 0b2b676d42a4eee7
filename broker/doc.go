// Package broker is one Ringtail node without its sockets: it opens the
// parts in order (metadata, partition logs, the group coordinators) and
// closes them in reverse, owns the topic lifecycle (the metadata store
// first, then the partition logs, so a crash between the two is repaired at
// the next start), translates topic configs into typed engine settings once
// per change, hosts the consumer-group coordinators (one per partition of
// the internal log __consumer_offsets, groups placed by Kafka's hash of
// their id), and keeps the purgatory: requests parked until a
// partition offset passes a point (delayed produce) or bytes arrive (delayed
// fetch), with deadlines, without a goroutine per waiting request.
//
// It knows Kafka's concepts (topics, partitions, acks, error sentinels) but
// not its wire format beyond what the group coordinator consumes: package
// net decodes requests, calls the node through small interfaces and encodes
// the answers. Nothing here listens on a socket.
//
// Open order: metadata store → purgatory → engine (recovers every partition
// the store lists, removes the others) → __consumer_offsets and a group
// coordinator per partition of it this node leads, each replayed from its
// partition. Close: purgatory (parked requests answered) → groups (parked
// group requests answered NOT_COORDINATOR) → engine (last sync and
// checkpoint) → metadata store.
package broker
