package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.DescribeProducers, 0, 0, func(h *Handlers) HandleFunc { return h.handleDescribeProducers })
}

// handleDescribeProducers answers DescribeProducers (key 61): the producers each partition led
// here remembers: each one's last timestamp, the coordinator epoch of its last marker and the
// first offset of its open transaction.
func (h *Handlers) handleDescribeProducers(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewDescribeProducersResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewDescribeProducersResponseTopicPartition()
			rp.Partition = p
			ps, err := h.node.DescribeProducers(t.Topic, p)
			if err != nil {
				rp.ErrorCode, rp.ErrorMessage = errorCode(err), errorMessage(err)
				c.Log.Info("describe producers: partition not served here", "topic", t.Topic, "partition", p, "err", err)
			}
			for _, s := range ps {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch, ap.LastSequence = s.ProducerID, int32(s.ProducerEpoch), s.LastSequence
				ap.LastTimestamp, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = s.LastTimestamp, s.CoordinatorEpoch, s.TxnStartOffset
				rp.ActiveProducers = append(rp.ActiveProducers, ap)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	respond(resp)
}
