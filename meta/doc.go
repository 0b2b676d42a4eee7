// Package meta owns the cluster metadata: the cluster id, topics with their configs and, per
// partition, replicas, leader, leader epoch, partition epoch and ISR, and the producer-id
// allocator.
//
// The metadata is a State changed only by Commands through Apply, which is pure: no clock, no
// randomness, no I/O, no goroutines. Whoever proposes a command puts into it every id, time and
// choice (a topic id drawn with crypto/rand, the replicas chosen for a partition), so every
// replica applying the same commands in the same order reaches the same state. Commands name
// the topic id and epoch they were built from (compare-and-set), because a proposal that timed
// out may still commit later: a stale or repeated command is rejected with its reason, never
// applied twice. Commands encode to a tagged binary format (command.go) and a State to a
// snapshot (snapshot.go).
//
// A Log orders and persists commands: LocalLog is the single-node log (a snapshot file and an
// append-only command file in the metadata directory, see locallog.go); meta/raftlog
// implements the same interface on a dragonboat Raft shard. A Log publishes each new State
// through Published, whose Watch lets the broker follow the metadata without polling. Store is
// the facade the broker uses: it builds commands (drawing ids, placing replicas on the local
// node) and proposes them to its Log.
//
// The package must not know about partition logs, sockets or Kafka error codes (its sentinel
// errors are mapped to codes by the network layer), and every file it touches goes through
// vfs.FS, so the crash tests cover metadata too.
//
// Lock order: Store.mu, then LocalLog.mu. Reads take neither: a Log publishes each State once
// it is complete and never changes it afterwards.
package meta
