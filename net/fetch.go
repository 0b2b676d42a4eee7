package kafkanet

import (
	"errors"
	"time"

	"github.com/ringtail/ringtail/broker"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.Fetch, 4, 12, func(h *Handlers) HandleFunc { return h.handleFetch }) }

// maxFetchWait bounds how long one fetch may be parked, whatever the client asks.
const maxFetchWait = 30 * time.Second

// handleFetch answers Fetch (key 1, v4–v12, read_uncommitted and read_committed alike since there
// are no transactions). Only records below the high watermark are served. When less than
// MinBytes is available the request is parked in the node's purgatory until a requested
// partition's high watermark moves and enough bytes are there, or MaxWaitMs passes; parking
// takes no goroutine, and later requests on the connection are not held up in processing.
// Fetch sessions (KIP-227) are not kept: every response has session id 0, which tells clients to
// send full fetches.
func (h *Handlers) handleFetch(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.FetchRequest)
	resp, size, open := h.fetchOnce(c, req)
	wait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	if size >= int(req.MinBytes) || wait <= 0 || len(open) == 0 {
		respond(resp)
		return
	}
	if wait > maxFetchWait {
		wait = maxFetchWait
	}
	// ready runs on the purgatory's worker only, one call at a time, so resp needs no lock.
	var ready *kmsg.FetchResponse
	h.node.DelayFetch(open, wait, func() bool {
		r, size, open := h.fetchOnce(c, req)
		if size >= int(req.MinBytes) || len(open) == 0 {
			ready = r
			return true
		}
		return false
	}, func(timedOut bool) {
		if timedOut || ready == nil {
			ready, _, _ = h.fetchOnce(c, req) // answer with what there is now
		}
		respond(ready)
	})
}

// fetchOnce reads every requested partition once. It returns the response, the record bytes in
// it, and the partitions that are open (the ones a parked fetch waits on).
func (h *Handlers) fetchOnce(c *Context, req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, []broker.TopicPartition) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	remaining := int(req.MaxBytes)
	if remaining <= 0 {
		remaining = 1 // still return the first batch (KIP-74)
	}
	size := 0
	var open []broker.TopicPartition
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			// Never null: librdkafka refuses a null record set (size -1) as a parse failure.
			sp.RecordBatches = []byte{}
			part, err := h.node.Partition(rt.Topic, rp.Partition, rp.CurrentLeaderEpoch)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				var nl *broker.NotLeaderError
				if errors.As(err, &nl) {
					sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = nl.Leader, nl.LeaderEpoch
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			open = append(open, broker.TopicPartition{Topic: rt.Topic, Partition: rp.Partition})
			maxBytes := int(rp.PartitionMaxBytes)
			if maxBytes > remaining {
				maxBytes = remaining
			}
			// KIP-74: the first batch of the first non-empty partition is returned even when it is
			// larger than the limits, so a consumer can always make progress.
			res, err := part.Read(rp.FetchOffset, maxBytes, size == 0)
			sp.HighWatermark = part.HighWatermark()
			sp.LastStableOffset = sp.HighWatermark
			sp.LogStartOffset = part.LogStartOffset()
			if err != nil {
				sp.ErrorCode = errorCode(err)
				if errors.Is(err, broker.ErrOffsetOutOfRange) {
					c.Log.Info("fetch: offset out of range", "topic", rt.Topic, "partition", rp.Partition,
						"offset", rp.FetchOffset, "log_start", sp.LogStartOffset, "high_watermark", sp.HighWatermark)
				} else {
					c.Log.Error("fetch: read failed", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			sp.HighWatermark = res.HighWatermark
			sp.LastStableOffset = res.HighWatermark
			sp.LogStartOffset = res.LogStartOffset
			if len(res.Records) > 0 {
				sp.RecordBatches = res.Records
			}
			size += len(res.Records)
			remaining -= len(res.Records)
			if remaining < 0 {
				remaining = 0
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, size, open
}
