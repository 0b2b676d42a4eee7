package broker

import (
	"net"
	"slices"
	"strconv"

	"github.com/ringtail/ringtail/meta"
)

// BrokerInfo is one broker as Metadata and DescribeCluster list it.
type BrokerInfo struct {
	ID     int32
	Host   string
	Port   int32
	Rack   *string
	Fenced bool
}

// Brokers lists the brokers clients may use: on a single node this node; in a cluster the
// registered brokers that are not fenced (Kafka lists the live ones), by id.
func (b *Broker) Brokers() []BrokerInfo { return b.brokers(false) }

// AllBrokers lists every registered broker, fenced ones included (DescribeCluster v2 asked to).
func (b *Broker) AllBrokers() []BrokerInfo { return b.brokers(true) }

func (b *Broker) brokers(withFenced bool) []BrokerInfo {
	if b.cl == nil {
		return []BrokerInfo{{ID: b.cfg.NodeID, Host: b.cfg.AdvertisedHost, Port: b.cfg.AdvertisedPort}}
	}
	var out []BrokerInfo
	for _, br := range b.meta.State().Brokers() {
		if br.Fenced && !withFenced {
			continue
		}
		host, portStr, err := net.SplitHostPort(br.Listener)
		if err != nil {
			continue
		}
		port, _ := strconv.Atoi(portStr)
		info := BrokerInfo{ID: br.ID, Host: host, Port: int32(port), Fenced: br.Fenced}
		if br.Rack != "" {
			rack := br.Rack
			info.Rack = &rack
		}
		out = append(out, info)
	}
	return out
}

// PartitionInfo is one partition as Metadata describes it.
type PartitionInfo struct {
	Leader      int32 // -1: no leader (LEADER_NOT_AVAILABLE)
	LeaderEpoch int32
	Replicas    []int32
	ISR         []int32
	Offline     []int32 // replicas on brokers that are fenced or gone
}

// PartitionInfo describes partition p of t: on a single node this node leads it with every
// replica in sync; in a cluster as the metadata says.
func (b *Broker) PartitionInfo(t Topic, p int32) PartitionInfo {
	self := []int32{b.cfg.NodeID}
	if b.cl == nil || int(p) >= len(t.Assignments) {
		info := PartitionInfo{Leader: b.cfg.NodeID, Replicas: self, ISR: self, Offline: []int32{}}
		if int(p) < len(t.Assignments) {
			info.LeaderEpoch = t.Assignments[p].LeaderEpoch
		}
		return info
	}
	a := t.Assignments[p]
	st := b.meta.State()
	offline := []int32{}
	for _, r := range a.Replicas {
		if br, ok := st.Broker(r); !ok || br.Fenced {
			offline = append(offline, r)
		}
	}
	leader := a.Leader
	if leader == meta.NoLeader {
		leader = -1
	}
	return PartitionInfo{Leader: leader, LeaderEpoch: a.LeaderEpoch, Replicas: slices.Clone(a.Replicas),
		ISR: slices.Clone(a.ISR), Offline: offline}
}

// MetadataState is the committed metadata this node follows, as last applied here: read-only
// (a State is never changed once published), for diagnostics that need more than Metadata
// carries, such as partition and broker epochs.
func (b *Broker) MetadataState() *meta.State { return b.meta.State() }

// MetadataProgress is the metadata follower's progress for the watchdog: how many times it
// has applied the committed metadata to this node, and whether a newer state than the last
// one it applied is waiting (pending). A single node has no follower: never pending.
func (b *Broker) MetadataProgress() (applies uint64, pending bool) {
	if b.cl == nil {
		return 0, false
	}
	applies = b.cl.applies.Load()
	return applies, b.cl.reconciled.Load() != b.meta.State()
}

// LedPartitions counts the partitions this node leads: on a single node every partition, in a
// cluster those the committed metadata names it leader of.
func (b *Broker) LedPartitions() int {
	if b.cl == nil {
		return len(b.engine.Partitions())
	}
	n := 0
	for _, t := range b.meta.State().Topics() {
		for _, a := range t.Assignments {
			if a.Leader == b.cfg.NodeID {
				n++
			}
		}
	}
	return n
}
