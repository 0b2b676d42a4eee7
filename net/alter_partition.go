package kafkanet

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/broker"
)

func init() {
	register(kmsg.AlterPartition, 0, 3, func(h *Handlers) HandleFunc { return h.handleAlterPartition })
}

// alterPartitionTimeout bounds the controller's work on one AlterPartition: deciding, and
// waiting for its change to commit (the node bounds each commit wait more tightly).
const alterPartitionTimeout = 10 * time.Second

// handleAlterPartition answers AlterPartition (key 56, v0–3), from a partition leader to the
// controller (this node, if it leads the metadata; else NOT_CONTROLLER): a new ISR per
// partition, compare-and-set on the partition epoch. v0–1 name topics, v2+ give topic ids;
// v3 names each member's broker epoch (KIP-903). Errors for the whole request
// (NOT_CONTROLLER, STALE_BROKER_EPOCH) are top-level; each partition gets its own code, or
// its leader, leader epoch, partition epoch and ISR as they are with the change committed.
// Partitions are never recovering from an unclean election here, so a request that says one
// is gets INVALID_REQUEST. The node logs every refusal.
func (h *Handlers) handleAlterPartition(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.AlterPartitionRequest)
	resp := req.ResponseKind().(*kmsg.AlterPartitionResponse)
	byID := req.Version >= 2
	// Each partition in request order: refused here, or one of what the node decides.
	var decide []broker.ISRRequest
	var refused []bool
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if p.LeaderRecoveryState != 0 {
				refused = append(refused, true)
				c.Log.Info("alter partition: refused: a partition recovering from an unclean election",
					"broker", req.BrokerID, "topic", t.Topic, "topic_id", t.TopicID, "partition", p.Partition)
				continue
			}
			refused = append(refused, false)
			r := broker.ISRRequest{Topic: t.Topic, Partition: p.Partition, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch}
			if byID {
				r.TopicID = t.TopicID
			}
			if req.Version >= 3 {
				for _, m := range p.NewEpochISR {
					r.NewISR = append(r.NewISR, broker.ISRMember{ID: m.BrokerID, BrokerEpoch: m.BrokerEpoch})
				}
			} else {
				for _, id := range p.NewISR {
					r.NewISR = append(r.NewISR, broker.ISRMember{ID: id, BrokerEpoch: -1})
				}
			}
			decide = append(decide, r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), alterPartitionTimeout)
	defer cancel()
	decided, err := h.node.AlterPartition(ctx, req.BrokerID, req.BrokerEpoch, decide)
	if err != nil {
		resp.ErrorCode = errorCode(err)
		respond(resp)
		return
	}
	i, next := 0, 0
	for _, t := range req.Topics {
		rt := kmsg.NewAlterPartitionResponseTopic()
		rt.Topic, rt.TopidID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewAlterPartitionResponseTopicPartition()
			rp.Partition = p.Partition
			if refused[i] {
				rp.ErrorCode = kerr.InvalidRequest.Code
			} else {
				h.answerAlterPartition(&rp, decided[next], byID, t.TopicID)
				next++
			}
			rt.Partitions = append(rt.Partitions, rp)
			i++
		}
		resp.Topics = append(resp.Topics, rt)
	}
	respond(resp)
}

// answerAlterPartition fills one partition's answer from the node's result.
func (h *Handlers) answerAlterPartition(rp *kmsg.AlterPartitionResponseTopicPartition, res broker.ISRResult, byID bool, topicID [16]byte) {
	if res.Err == nil {
		rp.LeaderID, rp.LeaderEpoch, rp.PartitionEpoch, rp.ISR = res.Leader, res.LeaderEpoch, res.PartitionEpoch, res.ISR
		return
	}
	rp.ErrorCode = errorCode(res.Err)
	if byID && rp.ErrorCode == kerr.UnknownTopicOrPartition.Code {
		if _, ok := h.node.TopicByID(topicID); !ok {
			rp.ErrorCode = kerr.UnknownTopicID.Code // as Kafka answers a topic id it does not know
		}
	}
}
