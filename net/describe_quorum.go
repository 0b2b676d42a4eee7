package kafkanet

import (
	"context"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.DescribeQuorum, 0, 2, func(h *Handlers) HandleFunc { return h.handleDescribeQuorum })
}

// MetadataTopic is the name DescribeQuorum reports the metadata log under, as Kafka's KRaft
// does.
const metadataTopic = "__cluster_metadata"

// handleDescribeQuorum answers DescribeQuorum (key 55, v0–2), what kafka-metadata-quorum and
// `ringtail cluster status` ask: the metadata log's Raft leader, term (as the leader epoch),
// voters and non-voting members (as observers). Offsets and fetch times are not tracked: -1.
// A single node has no quorum: INVALID_REQUEST.
func (h *Handlers) handleDescribeQuorum(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.DescribeQuorumRequest)
	resp := req.ResponseKind().(*kmsg.DescribeQuorumResponse)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := h.node.Quorum(ctx)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
		c.Log.Info("describe quorum: refused", "err", err)
		respond(resp)
		return
	}
	st := kmsg.NewDescribeQuorumResponseTopic()
	st.Topic = metadataTopic
	sp := kmsg.NewDescribeQuorumResponseTopicPartition()
	sp.LeaderID, sp.LeaderEpoch, sp.HighWatermark = q.LeaderID, int32(q.Term), -1
	replica := func(id uint64) kmsg.DescribeQuorumResponseTopicPartitionReplicaState {
		r := kmsg.NewDescribeQuorumResponseTopicPartitionReplicaState()
		r.ReplicaID, r.LogEndOffset, r.LastFetchTimestamp, r.LastCaughtUpTimestamp = int32(id), -1, -1, -1
		return r
	}
	node := func(id uint64, addr string) kmsg.DescribeQuorumResponseNode {
		n := kmsg.NewDescribeQuorumResponseNode()
		n.NodeID = int32(id)
		if host, port, err := net.SplitHostPort(addr); err == nil {
			p, _ := strconv.Atoi(port)
			l := kmsg.NewDescribeQuorumResponseNodeListener()
			l.Name, l.Host, l.Port = "RAFT", host, uint16(p)
			n.Listeners = append(n.Listeners, l)
		}
		return n
	}
	for _, id := range sortedIDs(q.Voters) {
		sp.CurrentVoters = append(sp.CurrentVoters, replica(id))
		resp.Nodes = append(resp.Nodes, node(id, q.Voters[id]))
	}
	for _, id := range sortedIDs(q.NonVoting) {
		sp.Observers = append(sp.Observers, replica(id))
		resp.Nodes = append(resp.Nodes, node(id, q.NonVoting[id]))
	}
	st.Partitions = append(st.Partitions, sp)
	resp.Topics = append(resp.Topics, st)
	respond(resp)
}

func sortedIDs(m map[uint64]string) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
