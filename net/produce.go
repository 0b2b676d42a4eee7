package kafkanet

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.Produce, 3, 11, func(h *Handlers) HandleFunc { return h.handleProduce }) }

// handleProduce answers Produce (key 0, v3+, record-batch magic 2). Each partition's batches are
// validated and appended in request order on this goroutine; the response waits until the node
// reports every partition's acks level met (acks=1: durable on this node; acks=all: below the
// high watermark) or failed. acks=0 gets no response at all, as Kafka specifies.
func (h *Handlers) handleProduce(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	acks := req.Acks
	if acks != 0 && acks != 1 && acks != -1 {
		c.Log.Warn("produce: invalid acks", "acks", acks)
		h.failProduce(resp, req, kerr.InvalidRequiredAcks.Code)
		respond(resp)
		return
	}

	// pending counts appends whose durability is outstanding, plus one for this loop; whoever
	// brings it to zero completes the response. Durability callbacks only record their error in
	// their own waiter; the last one applies them, ordered after every callback by the atomic.
	type waiter struct {
		sp  *kmsg.ProduceResponseTopicPartition
		err error
	}
	var waiters []*waiter
	var pending atomic.Int32
	pending.Store(1)
	finish := func() {
		if pending.Add(-1) != 0 || acks == 0 {
			return
		}
		for _, w := range waiters {
			if w.err != nil {
				w.sp.ErrorCode = errorCode(w.err)
				w.sp.ErrorMessage = errorMessage(w.err)
				w.sp.BaseOffset = -1
			}
		}
		respond(resp)
	}

	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
			var done func(error)
			if acks != 0 {
				w := &waiter{sp: sp}
				waiters = append(waiters, w)
				pending.Add(1)
				topic, partition := rt.Topic, rp.Partition
				done = func(err error) {
					if err != nil {
						w.err = err
						c.Log.Error("produce: not persisted", "topic", topic, "partition", partition, "err", err)
					}
					finish()
				}
			}
			var res broker.AppendResult
			var err error
			if req.TransactionID != nil {
				// KIP-890: the partition must be in the producer's open transaction.
				err = h.node.VerifyTxnProduce(*req.TransactionID, rt.Topic, rp.Partition, rp.Records)
			}
			if err == nil {
				res, err = h.node.Produce(rt.Topic, rp.Partition, rp.Records, acks, timeout, done)
			}
			if err != nil {
				sp.ErrorCode = errorCode(err)
				sp.ErrorMessage = errorMessage(err)
				var nl *broker.NotLeaderError
				if errors.As(err, &nl) {
					sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = nl.Leader, nl.LeaderEpoch
				}
				c.Log.Warn("produce: batch refused", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				if done != nil {
					finish() // the node does not call done when it refuses the batch
				}
				continue
			}
			sp.BaseOffset = res.BaseOffset
			sp.LogAppendTime = res.LogAppendTime
			sp.LogStartOffset = res.LogStartOffset
		}
	}
	if acks == 0 {
		respond(nil)
		return
	}
	finish()
}

func (h *Handlers) failProduce(resp *kmsg.ProduceResponse, req *kmsg.ProduceRequest, code int16) {
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			sp.BaseOffset = -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
}
