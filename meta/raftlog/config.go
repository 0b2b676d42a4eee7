package raftlog

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lni/dragonboat/v4/config"
)

// shardID is the one Raft shard of the metadata.
const shardID = 1

// deploymentID keeps a Ringtail NodeHost from exchanging messages with a NodeHost of another
// dragonboat application that reaches its port by mistake. It is recorded in the data
// directory and may never change.
const deploymentID = 0x52494e4754 // "RINGT"

// Raft timing. One logical tick (RTT) is 50 ms: a heartbeat every 2 ticks (100 ms) and an
// election after 20 to 40 ticks without one (dragonboat randomises the timeout between
// ElectionRTT and twice that), so on loopback a leader is elected 1 to 2 s after a start or
// after the old leader stops. Ten heartbeats per election timeout ride out a GC pause or a
// slow fsync on a busy disk without a needless election; 20 ticks in the range make two
// candidates starting in the same tick unlikely. The Kafka client's view of a controller
// change is dominated by the metadata refresh anyway (100 ms backoff, retries).
const (
	rttMillisecond = 50
	electionRTT    = 20
	heartbeatRTT   = 2
)

// attemptTimeout bounds one attempt of a proposal, a membership change or a read: twice the
// longest election timeout, so that an attempt stuck with a leader that died (a follower
// forwards a proposal to the leader and learns nothing if the leader is gone) is retried soon
// after the new leader is there, while a slow but live commit is not cut short.
const attemptTimeout = 2 * 2 * electionRTT * rttMillisecond * time.Millisecond

// Backoff between attempts after dragonboat answered at once that it cannot take the request
// (no leader yet, busy): short first, as an election on loopback takes about a second.
const (
	minBackoff = 20 * time.Millisecond
	maxBackoff = 400 * time.Millisecond
)

// Defaults of Config.
const (
	// DefaultSnapshotEntries: a snapshot every 1000 applied commands (as LocalLog's
	// DefaultSnapshotEvery), after which the log before it is compacted.
	DefaultSnapshotEntries = 1000
	// DefaultCompactionOverhead: entries kept behind a snapshot, so a follower a little
	// behind catches up from the log instead of receiving a whole snapshot.
	DefaultCompactionOverhead = 200
	// DefaultProposeTimeout bounds a Propose (and a membership change) whose context has no
	// deadline: the broker proposes with context.Background() and holds the store's lock
	// meanwhile, so a cluster without a quorum must not hang it forever.
	DefaultProposeTimeout = 10 * time.Second
)

// maxInMemLogSize bounds the Raft log entries held in memory before they are applied; past
// it proposals answer ErrSystemBusy (retried). A command is at most a few MB (a topic of
// meta.MaxPartitions partitions), so 64 MiB holds many.
const maxInMemLogSize = 64 << 20

// Config configures Open.
type Config struct {
	// Dir holds the Raft data: <data dir>/raft. See the package doc for its layout.
	Dir string
	// ReplicaID is this node's id in the shard: the broker's node id, which must be 1 or more
	// (Raft reserves 0 for "no node").
	ReplicaID uint64
	// RaftAddress is host:port where this node listens for Raft traffic and where the others
	// reach it. It may not change once the node has started: dragonboat records it in Dir,
	// and the other members know the node by it.
	RaftAddress string
	// InitialMembers maps the id of each first voter of the cluster to its RaftAddress, the
	// same on every node (from --peers). It is used only when Dir holds no Raft data for this
	// node; after that the membership lives in the Raft log and this is ignored, so starting
	// every node with the same flags every time is safe: there is no bootstrap step to run
	// twice. It must contain ReplicaID with RaftAddress, unless Join is set.
	InitialMembers map[uint64]string
	// Join: this node is not one of the initial members but was added to a running cluster
	// with AddVoter or AddNonVoting; it starts empty and waits for the leader to send it the
	// log. Ignored when Dir already holds its data.
	Join bool
	// NonVoting: this node was added with AddNonVoting. It must agree with how it was added.
	NonVoting bool
	// SnapshotEntries: a snapshot every this many applied commands (0: the default).
	SnapshotEntries uint64
	// CompactionOverhead: log entries kept behind each snapshot (0: the default).
	CompactionOverhead uint64
	// ProposeTimeout bounds calls whose context has no deadline (0: the default).
	ProposeTimeout time.Duration
	// Logger receives this package's logs and dragonboat's (process-wide: those go to the
	// logger of the last Log opened). nil: discard.
	Logger *slog.Logger
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.SnapshotEntries == 0 {
		cfg.SnapshotEntries = DefaultSnapshotEntries
	}
	if cfg.CompactionOverhead == 0 {
		cfg.CompactionOverhead = DefaultCompactionOverhead
	}
	if cfg.ProposeTimeout <= 0 {
		cfg.ProposeTimeout = DefaultProposeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Dir == "":
		return cfg, fmt.Errorf("raftlog: no directory")
	case cfg.ReplicaID == 0:
		return cfg, fmt.Errorf("raftlog: replica id 0: Raft node ids start at 1")
	}
	if err := checkAddress(cfg.RaftAddress); err != nil {
		return cfg, fmt.Errorf("raftlog: raft address: %w", err)
	}
	byAddr := make(map[string]uint64)
	for id, addr := range cfg.InitialMembers {
		if id == 0 {
			return cfg, fmt.Errorf("raftlog: initial member 0: Raft node ids start at 1")
		}
		if err := checkAddress(addr); err != nil {
			return cfg, fmt.Errorf("raftlog: initial member %d: %w", id, err)
		}
		// dragonboat panics on a member list with a repeated address.
		if other, dup := byAddr[addr]; dup {
			return cfg, fmt.Errorf("raftlog: initial members %d and %d share the address %s", min(id, other), max(id, other), addr)
		}
		byAddr[addr] = id
	}
	return cfg, nil
}

// checkMembership checks, for a node starting without Raft data, that it is one of the
// initial members at its own address (or joins), so a typo in --peers fails at once instead
// of leaving a node that can never win a vote.
func (c *Config) checkMembership() error {
	if c.Join {
		return nil
	}
	if len(c.InitialMembers) == 0 {
		return fmt.Errorf("raftlog: no Raft data in %s and no initial members: give the same peers to every node of a new cluster, or join one", c.Dir)
	}
	addr, ok := c.InitialMembers[c.ReplicaID]
	switch {
	case !ok:
		return fmt.Errorf("raftlog: node %d is not among the initial members %s (to add a node to a running cluster, join it)", c.ReplicaID, FormatPeers(c.InitialMembers))
	case addr != c.RaftAddress:
		return fmt.Errorf("raftlog: node %d has raft address %s but the initial members give it %s", c.ReplicaID, c.RaftAddress, addr)
	case c.NonVoting:
		return fmt.Errorf("raftlog: node %d: an initial member is a voter, not a non-voting member", c.ReplicaID)
	}
	return nil
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host: the others must be able to reach it", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}

// ParsePeers parses the --peers flag, "1@10.0.0.1:9192,2@10.0.0.2:9192,3@10.0.0.3:9192": each
// initial voter's node id and Raft address.
func ParsePeers(s string) (map[uint64]string, error) {
	peers := make(map[uint64]string)
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		idStr, addr, ok := strings.Cut(p, "@")
		if !ok {
			return nil, fmt.Errorf("raftlog: peer %q: want <node id>@<host>:<port>", p)
		}
		id, err := strconv.ParseUint(idStr, 10, 63)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("raftlog: peer %q: node id must be an integer from 1 (Raft reserves 0)", p)
		}
		if err := checkAddress(addr); err != nil {
			return nil, fmt.Errorf("raftlog: peer %q: %w", p, err)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("raftlog: peer %d given twice", id)
		}
		for other, a := range peers {
			if a == addr {
				return nil, fmt.Errorf("raftlog: peers %d and %d share the address %s", other, id, addr)
			}
		}
		peers[id] = addr
	}
	return peers, nil
}

// FormatPeers writes peers the way ParsePeers reads them, by id.
func FormatPeers(peers map[uint64]string) string {
	ids := make([]uint64, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d@%s", id, peers[id])
	}
	return strings.Join(parts, ",")
}

// nodeHostConfig is the NodeHost of cfg. Everything that dragonboat records in the directory
// and refuses to see change (the deployment id, the address, the LogDB and engine shard
// counts) is a constant here or comes from cfg's pinned fields.
func nodeHostConfig(cfg Config, listener *leaderListener) config.NodeHostConfig {
	logdb := config.GetTinyMemLogDBConfig()
	// One LogDB shard instead of 16: the metadata is one Raft shard, and each LogDB shard is
	// a pebble instance with its own memtables and preallocated WAL (16 x 4 MiB of WAL files
	// and 16 sets of background goroutines for nothing).
	logdb.Shards = 1
	return config.NodeHostConfig{
		DeploymentID:   deploymentID,
		NodeHostDir:    filepath.Join(cfg.Dir, "nodehost"),
		WALDir:         filepath.Join(cfg.Dir, "wal"),
		RTTMillisecond: rttMillisecond,
		RaftAddress:    cfg.RaftAddress,
		// Proposals, reads and config changes carry one command each; a full queue drops
		// messages, which Raft retransmits, rather than growing without bound.
		MaxSendQueueSize:    256 << 20,
		MaxReceiveQueueSize: 256 << 20,
		RaftEventListener:   listener,
		Expert: config.ExpertConfig{
			LogDB: logdb,
			// One worker per stage: there is one shard, and dragonboat's default (16 to 48
			// goroutines per stage) serves thousands. Recorded in the directory; fixed.
			Engine: config.EngineConfig{ExecShards: 1, CommitShards: 1, ApplyShards: 1, SnapshotShards: 1, CloseShards: 1},
		},
	}
}

// replicaConfig is the Raft configuration of this node in the metadata shard.
func replicaConfig(cfg Config) config.Config {
	return config.Config{
		ReplicaID:    cfg.ReplicaID,
		ShardID:      shardID,
		ElectionRTT:  electionRTT,
		HeartbeatRTT: heartbeatRTT,
		// CheckQuorum: a leader cut off from the majority steps down after an election
		// timeout, so a partitioned controller stops acting as one. PreVote: a node coming
		// back from a partition does not depose a working leader by bumping the term.
		CheckQuorum:        true,
		PreVote:            true,
		SnapshotEntries:    cfg.SnapshotEntries,
		CompactionOverhead: cfg.CompactionOverhead,
		MaxInMemLogSize:    maxInMemLogSize,
		IsNonVoting:        cfg.NonVoting,
		// WaitReady: StartReplica returns once the replica has recovered from its latest
		// snapshot, so State() is not the empty state of a node that has data.
		WaitReady: true,
	}
}
