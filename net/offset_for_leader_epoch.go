package kafkanet

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/broker"
)

func init() {
	register(kmsg.OffsetForLeaderEpoch, 0, 4, func(h *Handlers) HandleFunc { return h.handleOffsetForLeaderEpoch })
}

// handleOffsetForLeaderEpoch answers OffsetForLeaderEpoch (key 23, v0–4), what a consumer asks
// after a leader change to find where its position's epoch ends (KIP-320) and a follower to
// find where to truncate: the largest epoch at most the one asked for that the log holds, and
// the offset where the next epoch starts (the log end for the latest).
func (h *Handlers) handleOffsetForLeaderEpoch(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			part, err := h.node.Partition(rt.Topic, rp.Partition, rp.CurrentLeaderEpoch)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				if !errors.Is(err, broker.ErrNotLeaderOrFollower) {
					c.Log.Info("offset for leader epoch: refused", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
			} else {
				sp.LeaderEpoch, sp.EndOffset = part.EndOffsetForEpoch(rp.LeaderEpoch)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	respond(resp)
}
