// Package broker is one Ringtail node without its sockets: it opens the
// parts in order (metadata, partition logs, the group coordinator) and
// closes them in reverse, owns the topic lifecycle (the metadata store
// first, then the partition logs, so a crash between the two is repaired at
// the next start), translates topic configs into typed engine settings once
// per change, hosts the consumer-group coordinator and its internal log
// (__consumer_offsets), and keeps the purgatory: requests parked until a
// partition offset passes a point (delayed produce) or bytes arrive (delayed
// fetch), with deadlines, without a goroutine per waiting request.
//
// It knows Kafka's concepts (topics, partitions, acks, error sentinels) but
// not its wire format beyond what the group coordinator consumes: package
// net decodes requests, calls the node through small interfaces and encodes
// the answers. Nothing here listens on a socket.
//
// Open order: metadata store → engine (recovers every partition the store
// lists, removes the others) → __consumer_offsets and the group coordinator
// → purgatory. Close: purgatory (parked requests answered) → groups →
// engine (last sync and checkpoint) → metadata store.
package broker
