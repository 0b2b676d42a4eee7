package kafkanet

import (
	"errors"
	"log/slog"
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

	call := newProduceCall(c, req, resp, respond)
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			var done func(error)
			if acks != 0 {
				w := call.wait(sp, rt.Topic)
				done = w.done
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
					call.finish() // the node does not call done when it refuses the batch
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
	call.finish()
}

// produceCall is one Produce request between its appends and its response. Its partitions'
// waits and the response's partitions are each one array, so that a request costs a fixed
// handful of allocations however many partitions it names, and a partition one (its done).
type produceCall struct {
	log     *slog.Logger
	resp    *kmsg.ProduceResponse
	respond func(kmsg.Response)
	// pending counts appends whose durability is outstanding, plus one for the handler's
	// loop; whoever brings it to zero completes the response. A wait's done only records its
	// error in the wait; the last one applies them, ordered after every done by the atomic.
	pending atomic.Int32
	waits   []produceWait
}

// produceWait is one partition's append awaiting its acks level.
type produceWait struct {
	call  *produceCall
	sp    *kmsg.ProduceResponseTopicPartition
	topic string
	err   error
}

// newProduceCall lays out resp's topics and partitions for req, every partition at "no
// offset" until its append says otherwise.
func newProduceCall(c *Context, req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse, respond func(kmsg.Response)) *produceCall {
	n := 0
	for _, rt := range req.Topics {
		n += len(rt.Partitions)
	}
	call := &produceCall{log: c.Log, resp: resp, respond: respond}
	if req.Acks != 0 {
		call.waits = make([]produceWait, 0, n)
	}
	call.pending.Store(1)
	parts := make([]kmsg.ProduceResponseTopicPartition, n)
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions, parts = parts[:len(rt.Partitions):len(rt.Partitions)], parts[len(rt.Partitions):]
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
		}
	}
	return call
}

// wait adds the wait of partition sp of topic. waits was made with room for every partition,
// so the pointer stays valid (append never moves the array); the handler's loop holds pending
// above zero meanwhile, so no done can finish the call before the array is complete.
func (call *produceCall) wait(sp *kmsg.ProduceResponseTopicPartition, topic string) *produceWait {
	call.waits = append(call.waits, produceWait{call: call, sp: sp, topic: topic})
	call.pending.Add(1)
	return &call.waits[len(call.waits)-1]
}

func (w *produceWait) done(err error) {
	if err != nil {
		w.err = err
		w.call.log.Error("produce: not persisted", "topic", w.topic, "partition", w.sp.Partition, "err", err)
	}
	w.call.finish()
}

func (call *produceCall) finish() {
	if call.pending.Add(-1) != 0 {
		return
	}
	for i := range call.waits {
		if w := &call.waits[i]; w.err != nil {
			w.sp.ErrorCode = errorCode(w.err)
			w.sp.ErrorMessage = errorMessage(w.err)
			w.sp.BaseOffset = -1
		}
	}
	call.respond(call.resp)
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
