// Package meta owns the cluster metadata: the cluster id, the registered brokers (broker
// epoch, incarnation, listeners, rack, fenced, in controlled shutdown), topics with their
// configs and, per partition, replicas, leader, leader epoch, partition epoch and ISR, and the
// producer-id allocator.
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
// The cluster's rules, kept by Apply whatever order commands come in (cluster_command.go):
//
//   - A broker epoch comes from a counter of the state, bumped by each registration of a new
//     incarnation, so it only grows. A repeated registration (same incarnation) returns the
//     epoch it got. A new registration comes in fenced (only the controller unfences, on a
//     heartbeat with that epoch), and is refused while the broker's current registration is
//     unfenced. Broker commands are compare-and-set on the broker epoch.
//   - No fenced broker leads: FenceBroker waits until the broker leads nothing, a fenced or
//     shutting-down broker becomes no partition's leader and joins no ISR.
//   - ChangePartitions applies whole or not at all; each change is compare-and-set on the
//     partition epoch and bumps it, a new leader (NoLeader included) bumps the leader epoch.
//     An ISR is never empty: a partition's last in-sync replica stays in it, leaderless.
//   - While no broker is registered the state is a single node's: it does not register, its
//     partitions name its own id, and placement and partition changes accept any id. Once one
//     registers, new replicas must be registered, unfenced and not shutting down.
//
// Deciding which of these commands to propose (placement, liveness, elections) is the
// controller's (meta/controller), not this package's.
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
