// Package raftlog is the cluster's meta.Log: the metadata commands ordered and replicated by
// one dragonboat (github.com/lni/dragonboat/v4) Raft shard, with a meta.State as its
// in-memory state machine (statemachine.IStateMachine: the state is small).
//
// It owns the node's NodeHost and its replica of the shard: starting and restarting it,
// proposing commands with retries, publishing each applied state to watchers, snapshots and
// log compaction, the leader (the controller) and its changes, and membership changes. It
// must not decide anything about the metadata (meta.Apply does, and the controller proposes);
// it must not touch the broker's data directories other than its own, and nothing outside it
// imports dragonboat: the broker gets a meta.Log (meta.Config.Log) and, where it needs the
// leader or the membership, this package's Log.
//
// # Entries and results
//
// A Raft entry is a command in an envelope with a proposal id (statemachine.go). Every
// replica applies it with meta.Apply to a clone of its state and publishes the clone; Apply's
// answer goes back to the proposer in-process (dragonboat answers a proposal with the
// proposing node's own Update result), keyed by the proposal id, so Propose returns exactly
// what Apply said, and a retry of a timed-out proposal that Apply rejects as the stale repeat
// of the earlier attempt still returns the earlier attempt's result (see Log.Propose).
//
// # The dragonboat facts it relies on
//
//   - A NodeHost reserves memory and disk by its LogDB config: the default one gigabytes, so
//     the tiny one is used, with one LogDB shard and one engine worker per stage (config.go).
//     Those shard counts, the deployment id and the Raft address are recorded in the
//     directory and may never change.
//   - The Raft address may not change across restarts: the other members know the node by
//     it, and the NodeHost refuses a directory written under another address.
//   - dragonboat names a directory after the host name and records it; a changed host name
//     keeps the node from starting (ErrHostnameChanged says so before dragonboat does).
//   - StartReplica returns once the latest snapshot is restored (WaitReady) and replays the
//     committed log after it in the background; Open waits for that replay, so a node
//     restarted without a quorum serves its last state, not the snapshot's.
//   - A log reader's Snapshot() holds a reference that blocks compaction until dropped.
//   - A node's bootstrap record lives beside its log: a node with one restarts from it and is
//     given no member list (dragonboat refuses a list that differs from the record), which is
//     why every node may be started with the same --peers every time.
//   - Right after a leader change, proposals and reads answer ErrShardNotReady; a follower
//     forwards proposals to the leader, and a forwarded proposal lost with a dying leader
//     only times out. Both are retried (Log.retry).
//   - A proposal that timed out may still commit: meta's commands are compare-and-set, so a
//     retry is safe, and the proposal id turns "stale: my own earlier attempt" into that
//     attempt's result.
//   - Update must be deterministic and returns an error only for what cannot go on (it
//     panics the NodeHost): an entry this version cannot decode.
//   - Build with CGO_ENABLED=0: with cgo, pebble (dragonboat's LogDB) compiles the zstd C
//     library; without, it uses pure Go. The pebble version is dragonboat's own; go.mod must
//     not pull a newer one.
//
// # On disk
//
// Under Config.Dir (<data dir>/raft):
//
//	nodehost/                          NodeHostDir
//	  dragonboat.ds, LOCK, NODEHOST.ID   the flag file (address, host name, shard counts),
//	                                     the directory lock, the NodeHost's id
//	  <hostname>/<deployment id, 20 digits>/
//	    logdb-0/                         pebble: Raft entries, hard state, bootstrap record
//	    snapshot-part-1/snapshot-1-<replica id>/snapshot-<index, 16 hex>/
//	                                     the latest snapshot: .gbsnap (meta.State.Snapshot
//	                                     in dragonboat's framing) and snapshot.metadata
//	wal/                               WALDir
//	  dragonboat.ds, LOCK
//	  <hostname>/<deployment id>/logdb-0/*.log   pebble's write-ahead log (4 MiB files)
//
// # Lock order
//
// Log.closeMu → (dragonboat). dragonboat's state-machine lock → proposals.mu (Update
// records outcomes under it). leaderListener.mu and proposals.mu are leaves. Propose, the
// membership changes and reads hold none of these while waiting on dragonboat; meta.Store.mu
// is held by the caller across Propose (meta's chain: Store.mu → raftlog, as with LocalLog).
package raftlog
