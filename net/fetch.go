package kafkanet

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/ringtail/ringtail/broker"
	"github.com/ringtail/ringtail/net/fetchsession"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.Fetch, 4, 13, func(h *Handlers) HandleFunc { return h.handleFetch }) }

// maxFetchWait bounds how long one fetch may be parked, whatever the client asks.
const maxFetchWait = 30 * time.Second

// firstSessionVersion is the Fetch version that carries session ids and epochs (KIP-227);
// firstTopicIDVersion the one that names topics by id (KIP-516).
const (
	firstSessionVersion = 7
	firstTopicIDVersion = 13
)

// newFetchSessions returns the session cache of a broker: slots sessions at most, ids drawn
// at random so that one client cannot guess another's.
func newFetchSessions(slots int) *fetchsession.Cache {
	return fetchsession.NewCache(slots, fetchsession.DefaultEvictionAge, func() int32 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return int32(binary.BigEndian.Uint32(b[:]) &^ (1 << 31))
	})
}

// handleFetch answers Fetch (key 1, v4–v13). Only records below the high watermark are served;
// read_committed (isolation level 1) reads stop at the last stable offset and carry the aborted
// transactions of the batches returned (engine/txn.go). Fetch sessions
// (KIP-227, net/fetchsession) decide which partitions a request reads — its own, or in an
// incremental fetch those of its session — and which the answer carries. When less than
// MinBytes is available the request is parked in the node's purgatory until one of the
// partitions read moves its high watermark and enough bytes are there, or MaxWaitMs passes;
// parking takes no goroutine, and later requests on the connection are not held up in
// processing. The session is updated once, when the request arrives (so its epoch is spent at
// once, as in Kafka), and compared with what was read once, when the answer is made.
func (h *Handlers) handleFetch(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.FetchRequest)
	fc := h.sessions.Begin(sessionRequest(req, c.Version), time.Now())
	if fc.Mode == fetchsession.Failed {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = errorCode(fc.Err)
		c.Log.Info("fetch: session refused", "session_id", req.SessionID, "epoch", req.SessionEpoch,
			"code", kerr.ErrorForCode(resp.ErrorCode))
		respond(resp)
		return
	}
	if fc.Added+fc.Removed > 0 {
		c.Log.Debug("fetch: session changed", "session_id", req.SessionID, "added", fc.Added, "removed", fc.Removed)
	}
	rd := h.fetchOnce(c, req, fc)
	wait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	if rd.size >= int(req.MinBytes) || wait <= 0 || len(rd.open) == 0 {
		respond(h.answer(req, fc, rd))
		return
	}
	if wait > maxFetchWait {
		wait = maxFetchWait
	}
	// The check runs on every high-watermark move of a watched partition: it estimates from
	// positions and reads nothing (reading everything gathered so far on each move made a
	// fetch with a large MinBytes cost the square of what it waited for); the answer reads once.
	h.node.DelayFetch(rd.open, wait, func() bool {
		return h.enoughToAnswer(req, fc)
	}, func(bool) {
		respond(h.answer(req, fc, h.fetchOnce(c, req, fc)))
	})
}

// enoughToAnswer says whether a parked fetch should be answered now: its partitions hold
// MinBytes by estimate (Partition.BytesToRead, each at most its MaxBytes), or none of them is
// open any more (each led elsewhere now, deleted, or its offset out of range) — what a read
// with fetchOnce would have decided, without reading.
func (h *Handlers) enoughToAnswer(req *kmsg.FetchRequest, fc *fetchsession.Context) bool {
	var total int64
	open := 0
	for _, fp := range fc.Partitions {
		topic := fp.Topic
		if topic == "" {
			t, found := h.node.TopicByID(fp.TopicID)
			if !found {
				continue
			}
			topic = t.Name
		}
		part, err := h.node.Partition(topic, fp.Partition, fp.CurrentLeaderEpoch)
		if err != nil {
			continue
		}
		n, err := part.BytesToRead(fp.Offset, req.IsolationLevel == 1)
		if err != nil {
			continue
		}
		open++
		// A partition's limit below one byte still returns its first batch (KIP-74).
		total += min(n, max(int64(fp.MaxBytes), 1))
		if total >= int64(req.MinBytes) {
			return true
		}
	}
	return open == 0
}

// sessionRequest is the session part of a Fetch request. Below v7 there are no sessions: the
// request is a sessionless full fetch whatever its (absent) fields hold.
func sessionRequest(req *kmsg.FetchRequest, version int16) fetchsession.Request {
	ids := version >= firstTopicIDVersion
	sr := fetchsession.Request{SessionID: req.SessionID, Epoch: req.SessionEpoch, UsesTopicIDs: ids,
		Privileged: req.ReplicaID >= 0}
	if version < firstSessionVersion {
		sr.SessionID, sr.Epoch = fetchsession.InvalidSessionID, fetchsession.FinalEpoch
	}
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			sr.Partitions = append(sr.Partitions, fetchsession.PartitionFetch{
				Key: sessionKey(ids, rt.Topic, rt.TopicID, rp.Partition),
				Fetch: fetchsession.Fetch{Offset: rp.FetchOffset, MaxBytes: rp.PartitionMaxBytes,
					CurrentLeaderEpoch: rp.CurrentLeaderEpoch, LastFetchedEpoch: rp.LastFetchedEpoch,
					LogStartOffset: rp.LogStartOffset},
			})
		}
	}
	for _, ft := range req.ForgottenTopics {
		for _, p := range ft.Partitions {
			sr.Forgotten = append(sr.Forgotten, sessionKey(ids, ft.Topic, ft.TopicID, p))
		}
	}
	return sr
}

// sessionKey names a partition by topic id from v13, by topic name below.
func sessionKey(ids bool, topic string, id [16]byte, partition int32) fetchsession.Key {
	if ids {
		return fetchsession.Key{TopicID: id, Partition: partition}
	}
	return fetchsession.Key{Topic: topic, Partition: partition}
}

// fetchRead is one read of a fetch's partitions: the answer of each (in the order of the
// fetch context's partitions), what the session compares, the record bytes read, and the
// partitions that are open (the ones a parked fetch waits on).
type fetchRead struct {
	names   []string // topic names, "" where a topic id is unknown
	parts   []kmsg.FetchResponseTopicPartition
	results []fetchsession.Result
	size    int
	open    []broker.TopicPartition
}

// fetchOnce reads every partition of the fetch once.
func (h *Handlers) fetchOnce(c *Context, req *kmsg.FetchRequest, fc *fetchsession.Context) *fetchRead {
	remaining := int(req.MaxBytes)
	if remaining <= 0 {
		remaining = 1 // still return the first batch (KIP-74)
	}
	n := len(fc.Partitions)
	rd := &fetchRead{names: make([]string, n), parts: make([]kmsg.FetchResponseTopicPartition, n),
		results: make([]fetchsession.Result, n)}
	var byID map[[16]byte]string // topic ids resolved in this read
	for i, fp := range fc.Partitions {
		sp := &rd.parts[i]
		sp.Default()
		sp.Partition = fp.Partition
		// Never null: librdkafka refuses a null record set (size -1) as a parse failure.
		sp.RecordBatches = []byte{}
		res := &rd.results[i]
		res.HighWatermark, res.LastStableOffset, res.LogStartOffset = -1, -1, -1
		topic := fp.Topic
		if fp.Topic == "" {
			name, ok := byID[fp.TopicID]
			if !ok {
				if t, found := h.node.TopicByID(fp.TopicID); found {
					name = t.Name
				}
				if byID == nil {
					byID = make(map[[16]byte]string)
				}
				byID[fp.TopicID] = name
			}
			if name == "" {
				sp.ErrorCode, res.Error = kerr.UnknownTopicID.Code, true
				continue
			}
			topic = name
		}
		rd.names[i] = topic
		part, err := h.node.Partition(topic, fp.Partition, fp.CurrentLeaderEpoch)
		if err != nil {
			sp.ErrorCode, res.Error = errorCode(err), true
			var nl *broker.NotLeaderError
			if errors.As(err, &nl) {
				sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = nl.Leader, nl.LeaderEpoch
			}
			continue
		}
		rd.open = append(rd.open, broker.TopicPartition{Topic: topic, Partition: fp.Partition})
		maxBytes := min(int(fp.MaxBytes), remaining)
		// KIP-74: the first batch of the first non-empty partition is returned even when it is
		// larger than the limits, so a consumer can always make progress.
		r, err := part.ReadIsolated(fp.Offset, maxBytes, rd.size == 0, req.IsolationLevel == 1)
		if err != nil {
			sp.HighWatermark = part.HighWatermark()
			sp.LastStableOffset = part.LastStableOffset()
			sp.LogStartOffset = part.LogStartOffset()
			sp.ErrorCode, res.Error = errorCode(err), true
			if errors.Is(err, broker.ErrOffsetOutOfRange) {
				c.Log.Info("fetch: offset out of range", "topic", topic, "partition", fp.Partition,
					"offset", fp.Offset, "log_start", sp.LogStartOffset, "high_watermark", sp.HighWatermark)
			} else {
				c.Log.Error("fetch: read failed", "topic", topic, "partition", fp.Partition, "err", err)
			}
			continue
		}
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = r.HighWatermark, r.LastStableOffset, r.LogStartOffset
		res.HighWatermark, res.LastStableOffset, res.LogStartOffset = r.HighWatermark, r.LastStableOffset, r.LogStartOffset
		for _, a := range r.Aborted {
			at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
			at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
			sp.AbortedTransactions = append(sp.AbortedTransactions, at)
		}
		if len(r.Records) > 0 {
			sp.RecordBatches = r.Records
		}
		res.RecordBytes = len(r.Records)
		rd.size += len(r.Records)
		remaining = max(remaining-len(r.Records), 0)
	}
	return rd
}

// answer builds the response from a read: the session decides which partitions it carries
// (all, but in an incremental fetch only those with news) and the session id it names.
// Consecutive partitions of one topic share a topic entry.
func (h *Handlers) answer(req *kmsg.FetchRequest, fc *fetchsession.Context, rd *fetchRead) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	id, include := h.sessions.Finish(fc, rd.results, time.Now())
	resp.SessionID = id
	for i, fp := range fc.Partitions {
		if !include[i] {
			continue
		}
		if n := len(resp.Topics); n == 0 || resp.Topics[n-1].TopicID != fp.TopicID || resp.Topics[n-1].Topic != rd.names[i] {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rd.names[i], fp.TopicID
			if fp.Topic != "" {
				st.Topic = fp.Topic
			}
			resp.Topics = append(resp.Topics, st)
		}
		st := &resp.Topics[len(resp.Topics)-1]
		st.Partitions = append(st.Partitions, rd.parts[i])
	}
	return resp
}
