package kafkanet

import (
	"errors"
	"reflect"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine"
)

// maxFetchWait bounds how long one fetch may be parked, whatever the client asks.
const maxFetchWait = 30 * time.Second

// handleFetch answers Fetch (key 1, v4–v12, read_uncommitted and read_committed alike since there
// are no transactions). Only durable data is served (up to the high watermark). When less than
// MinBytes is available the request is parked until a requested partition's high watermark
// advances or MaxWaitMs passes; parking happens off the connection's request goroutine so later
// requests on the connection are not held up in processing. Fetch sessions (KIP-227) are not
// kept: every response has session id 0, which tells clients to send full fetches.
func (b *Broker) handleFetch(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.FetchRequest)
	resp, size, changed := b.fetchOnce(c, req)
	wait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	if size >= int(req.MinBytes) || wait <= 0 || len(changed) == 0 {
		respond(resp)
		return
	}
	if wait > maxFetchWait {
		wait = maxFetchWait
	}
	go func() {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			if !waitAny(changed, timer.C) {
				break // timed out: answer with what there is now
			}
			resp, size, changed = b.fetchOnce(c, req)
			if size >= int(req.MinBytes) || len(changed) == 0 {
				respond(resp)
				return
			}
		}
		resp, _, _ = b.fetchOnce(c, req)
		respond(resp)
	}()
}

// fetchOnce reads every requested partition once. It returns the response, the record bytes in
// it, and the change channels of the partitions read (taken before reading, so an append that
// lands after the read still wakes the waiter).
func (b *Broker) fetchOnce(c *Context, req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, []<-chan struct{}) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	remaining := int(req.MaxBytes)
	if remaining <= 0 {
		remaining = 1 // still return the first batch (KIP-74)
	}
	size := 0
	var changed []<-chan struct{}
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			// Never null: librdkafka refuses a null record set (size -1) as a parse failure.
			sp.RecordBatches = []byte{}
			part := b.partition(rt.Topic, rp.Partition)
			if part == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			changed = append(changed, part.Changed())
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
				if errors.Is(err, engine.ErrOffsetOutOfRange) {
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
	return resp, size, changed
}

// waitAny blocks until one of chans is closed (true) or timeout fires (false).
func waitAny(chans []<-chan struct{}, timeout <-chan time.Time) bool {
	if len(chans) == 1 {
		select {
		case <-chans[0]:
			return true
		case <-timeout:
			return false
		}
	}
	cases := make([]reflect.SelectCase, 0, len(chans)+1)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timeout)})
	for _, ch := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	chosen, _, _ := reflect.Select(cases)
	return chosen != 0
}
