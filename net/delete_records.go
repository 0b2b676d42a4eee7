package kafkanet

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.DeleteRecords, 0, 2, func(h *Handlers) HandleFunc { return h.handleDeleteRecords })
}

// handleDeleteRecords answers DeleteRecords (key 21, v0–2), what kafka-delete-records and kadm's
// DeleteRecords send: each partition's log start offset moves up to the offset given (-1: the
// high watermark), durably, and the low watermark in effect is returned. Records below it are
// never served again; whole segments below it are deleted by the next retention passes. An
// offset beyond the high watermark is OFFSET_OUT_OF_RANGE; the broker's internal topics manage
// their own start.
func (h *Handlers) handleDeleteRecords(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			var err error
			sp.LowWatermark, err = h.node.DeleteRecords(rt.Topic, rp.Partition, rp.Offset)
			if err != nil {
				sp.LowWatermark = -1
				sp.ErrorCode = errorCode(err)
				c.Log.Warn("delete records: refused", "topic", rt.Topic, "partition", rp.Partition,
					"offset", rp.Offset, "code", sp.ErrorCode, "err", err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	respond(resp)
}
