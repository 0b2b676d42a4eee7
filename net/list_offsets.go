package kafkanet

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.ListOffsets, 1, 7, func(h *Handlers) HandleFunc { return h.handleListOffsets })
}

// Special timestamps of ListOffsets.
const (
	listLatest       = -1
	listEarliest     = -2
	listMaxTimestamp = -3 // v7+
)

// handleListOffsets answers ListOffsets (key 2, v1–v7): earliest, latest (the high watermark),
// the record with the largest timestamp, or the first offset at or after a timestamp.
func (h *Handlers) handleListOffsets(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp = -1
			sp.Offset = -1
			part, err := h.node.Partition(rt.Topic, rp.Partition, rp.CurrentLeaderEpoch)
			ok := err == nil
			switch {
			case !ok:
				sp.ErrorCode = errorCode(err)
				c.Log.Info("list offsets: partition not served here", "topic", rt.Topic, "partition", rp.Partition, "err", err)
			case rp.Timestamp != listEarliest && !part.HighWatermarkCurrent():
				sp.ErrorCode = kerr.OffsetNotAvailable.Code
				ok = false
				c.Log.Info("list offsets: a new leader's high watermark has not reached its epoch start yet", "topic", rt.Topic, "partition", rp.Partition)
			case rp.Timestamp == listLatest && req.IsolationLevel == 1:
				sp.Offset = part.LastStableOffset() // read_committed consumers start at the stable end
			case rp.Timestamp == listLatest:
				sp.Offset = part.HighWatermark()
			case rp.Timestamp == listEarliest:
				sp.Offset = part.LogStartOffset()
			case rp.Timestamp == listMaxTimestamp:
				// KIP-734: the record holding the largest timestamp, the first if several do. The
				// segments know the batch; the time lookup finds the record inside it.
				// If DeleteRecords removed that record, no record from the log start has it: -1
				// (not the largest of the records left, which would need a scan).
				_, maxTs := part.MaxTimestamp()
				if maxTs >= 0 {
					if off, ts, ok := part.OffsetForTime(maxTs); ok {
						sp.Offset, sp.Timestamp = off, ts
					}
				}
			case rp.Timestamp < 0:
				sp.ErrorCode = kerr.InvalidRequest.Code // -4, -5: tiered-storage lookups we do not have
				c.Log.Warn("list offsets: unsupported timestamp", "timestamp", rp.Timestamp)
			default:
				if off, ts, ok := part.OffsetForTime(rp.Timestamp); ok {
					sp.Offset, sp.Timestamp = off, ts
				}
			}
			sp.LeaderEpoch = 0
			if ok {
				sp.LeaderEpoch = part.LeaderEpoch()
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	respond(resp)
}
