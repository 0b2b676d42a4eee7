package kafkanet

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// randomFetchResponse makes a Fetch response with what the handler may set, each field at its
// default or not at random, record sets from nil to above inlineRecords.
func randomFetchResponse(rng *rand.Rand, version int16) *kmsg.FetchResponse {
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(version)
	resp.ThrottleMillis = rng.Int32N(100)
	resp.ErrorCode = int16(rng.IntN(3))
	resp.SessionID = rng.Int32()
	for range rng.IntN(4) {
		t := kmsg.NewFetchResponseTopic()
		t.Topic = string(bytes.Repeat([]byte{'a' + byte(rng.IntN(26))}, rng.IntN(40)))
		for i := range t.TopicID {
			t.TopicID[i] = byte(rng.Uint32())
		}
		for range rng.IntN(5) {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition = rng.Int32N(1000)
			p.ErrorCode = int16(rng.IntN(2) * 6)
			p.HighWatermark, p.LastStableOffset, p.LogStartOffset = rng.Int64N(1<<40), rng.Int64N(1<<40), rng.Int64N(1<<40)
			if rng.IntN(3) == 0 {
				p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
				for range rng.IntN(3) {
					a := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
					a.ProducerID, a.FirstOffset = rng.Int64(), rng.Int64()
					p.AbortedTransactions = append(p.AbortedTransactions, a)
				}
			}
			if rng.IntN(4) == 0 {
				p.PreferredReadReplica = rng.Int32N(5)
			}
			switch rng.IntN(4) {
			case 0: // nil: encoded as null
			case 1:
				p.RecordBatches = []byte{}
			case 2:
				p.RecordBatches = randomBytes(rng, rng.IntN(inlineRecords))
			default:
				p.RecordBatches = randomBytes(rng, inlineRecords+rng.IntN(3*inlineRecords))
			}
			if rng.IntN(4) == 0 {
				p.DivergingEpoch.Epoch, p.DivergingEpoch.EndOffset = rng.Int32N(50), rng.Int64N(1<<30)
			}
			if rng.IntN(4) == 0 {
				p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = rng.Int32N(5), rng.Int32N(50)
			}
			if rng.IntN(6) == 0 {
				p.SnapshotID.EndOffset, p.SnapshotID.Epoch = rng.Int64N(1<<30), rng.Int32N(50)
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestFetchFrameMatchesKmsg: the vectored Fetch frame is kmsg's frame byte for byte, at every
// version served, and references (does not copy) the record sets of inlineRecords or more.
func TestFetchFrameMatchesKmsg(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for version := int16(4); version <= 13; version++ {
		for i := range 300 {
			resp := randomFetchResponse(rng, version)
			want := appendResponse(nil, int16(kmsg.Fetch), int32(i), resp)
			vec, ok := encodeFetchFrame(int32(i), resp)
			if !ok {
				t.Fatalf("v%d: a response the handler could make was refused", version)
			}
			if got := bytes.Join(vec, nil); !bytes.Equal(got, want) {
				t.Fatalf("v%d case %d: frame differs from kmsg's:\n got %x\nwant %x", version, i, got, want)
			}
			refs := map[*byte]bool{}
			for _, b := range vec {
				if len(b) > 0 {
					refs[&b[0]] = true
				}
			}
			for _, tp := range resp.Topics {
				for _, p := range tp.Partitions {
					if len(p.RecordBatches) >= inlineRecords && !refs[&p.RecordBatches[0]] {
						t.Fatalf("v%d case %d: a record set of %d bytes was copied", version, i, len(p.RecordBatches))
					}
				}
			}
		}
	}
}

// TestFetchFrameLeavesUnknownTagsToKmsg: what the vectored encoder does not know goes to kmsg.
func TestFetchFrameLeavesUnknownTagsToKmsg(t *testing.T) {
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(12)
	resp.UnknownTags.Set(7, []byte{1})
	if _, ok := encodeFetchFrame(1, resp); ok {
		t.Fatal("a response with unknown tags was encoded")
	}
	resp = kmsg.NewPtrFetchResponse()
	resp.SetVersion(16)
	if _, ok := encodeFetchFrame(1, resp); ok {
		t.Fatal("a version above 13 was encoded")
	}
}

// TestVectoredFetchFramesToASlowReader: Fetch responses of more record buffers than one writev
// takes (1,500 partitions of 8 KiB each, 12 MB a response), to a client that reads nothing
// until all are answered, so most of each goes through the event loop, arrive whole and in
// order.
func TestVectoredFetchFramesToASlowReader(t *testing.T) {
	const (
		partitions = 1500
		recordSize = 8 << 10
		requests   = 3
	)
	records := func(corr int32, p int) []byte {
		b := bytes.Repeat([]byte{byte(corr), byte(p), byte(p >> 8)}, recordSize/3+1)
		return b[:recordSize]
	}
	reg := NewRegistry()
	var answered atomic.Int32
	reg.Register(API{Key: int16(kmsg.Fetch), MinVersion: 4, MaxVersion: 13, Handle: func(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		tp := kmsg.NewFetchResponseTopic()
		tp.Topic = "t"
		for p := range partitions {
			pp := kmsg.NewFetchResponseTopicPartition()
			pp.Partition = int32(p)
			pp.RecordBatches = records(int32(answered.Load()+1), p)
			tp.Partitions = append(tp.Partitions, pp)
		}
		resp.Topics = []kmsg.FetchResponseTopic{tp}
		answered.Add(1)
		respond(resp)
	}})
	s := startServer(t, reg, 0)
	c := dial(t, s)
	_ = c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	var batch []byte
	for range requests {
		batch = append(batch, c.frame(kmsg.NewPtrFetchRequest(), 12)...)
	}
	c.write(batch)
	waitFor(t, "every fetch answered while the client reads nothing", func() error {
		if n := answered.Load(); n < requests {
			return fmt.Errorf("%d of %d answered", n, requests)
		}
		return nil
	})
	for i := range requests {
		resp := kmsg.NewPtrFetchResponse()
		corr := c.read(resp, 12)
		if corr != int32(i+1) {
			t.Fatalf("response %d has correlation id %d", i+1, corr)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != partitions {
			t.Fatalf("response %d: %d topics", corr, len(resp.Topics))
		}
		for p, pp := range resp.Topics[0].Partitions {
			if !bytes.Equal(pp.RecordBatches, records(corr, p)) {
				t.Fatalf("response %d, partition %d: records differ", corr, p)
			}
		}
	}
}
