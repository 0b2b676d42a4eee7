package kafkanet

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A Fetch response is mostly record bytes, read from the segment files into buffers of their
// own. kmsg's encoder copies them into the response frame, which on a consumer reading a full
// topic was half the broker's CPU (the copy and the frame's growth). encodeFetchFrame writes
// the frame as a vector instead: the encoded fields in one buffer, cut where a partition's
// records go, and the record buffers themselves between the cuts, which sendmsg (or gnet's
// writev) gathers. The bytes on the wire are kmsg's, byte for byte (fetch_encode_test.go).

// inlineRecords is the size below which a partition's records are copied into the fields
// buffer after all: one more buffer in the vector costs more than copying that little.
const inlineRecords = 2048

// encodeFetchFrame encodes the response frame (size prefix, header, body) of a Fetch at resp's
// version, as buffers to write in order; ok is false for what it does not encode (tagged
// fields it does not know, a broker list: nothing the handler sets), which the caller then
// encodes with kmsg. A single buffer means no records were worth referencing.
func encodeFetchFrame(correlationID int32, resp *kmsg.FetchResponse) (frame [][]byte, ok bool) {
	if !plainFetchResponse(resp) {
		return nil, false
	}
	v := resp.Version
	flexible := v >= 12
	// The fields take a few dozen bytes a partition; the inlined records add to that.
	size := 64
	refs := 0
	for i := range resp.Topics {
		t := &resp.Topics[i]
		size += 32 + len(t.Topic)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			size += 64 + 16*len(p.AbortedTransactions)
			if len(p.RecordBatches) < inlineRecords {
				size += len(p.RecordBatches)
			} else {
				refs++
			}
		}
	}
	b := make([]byte, 0, size)
	// cuts[i] is where the fields buffer is cut for the i-th referenced record buffer.
	var cuts []int
	var recs [][]byte
	if refs > 0 {
		cuts = make([]int, 0, refs)
		recs = make([][]byte, 0, refs)
	}
	b = appendResponseHeader(b, correlationID, flexible)
	b = kbin.AppendInt32(b, resp.ThrottleMillis)
	if v >= 7 {
		b = kbin.AppendInt16(b, resp.ErrorCode)
		b = kbin.AppendInt32(b, resp.SessionID)
	}
	b = appendArrayLen(b, len(resp.Topics), flexible)
	for i := range resp.Topics {
		t := &resp.Topics[i]
		switch {
		case v >= 13:
			b = kbin.AppendUuid(b, t.TopicID)
		case flexible:
			b = kbin.AppendCompactString(b, t.Topic)
		default:
			b = kbin.AppendString(b, t.Topic)
		}
		b = appendArrayLen(b, len(t.Partitions), flexible)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			b = kbin.AppendInt32(b, p.Partition)
			b = kbin.AppendInt16(b, p.ErrorCode)
			b = kbin.AppendInt64(b, p.HighWatermark)
			b = kbin.AppendInt64(b, p.LastStableOffset)
			if v >= 5 {
				b = kbin.AppendInt64(b, p.LogStartOffset)
			}
			if flexible {
				b = kbin.AppendCompactNullableArrayLen(b, len(p.AbortedTransactions), p.AbortedTransactions == nil)
			} else {
				b = kbin.AppendNullableArrayLen(b, len(p.AbortedTransactions), p.AbortedTransactions == nil)
			}
			for _, a := range p.AbortedTransactions {
				b = kbin.AppendInt64(b, a.ProducerID)
				b = kbin.AppendInt64(b, a.FirstOffset)
				if flexible {
					b = append(b, 0) // no tags
				}
			}
			if v >= 11 {
				b = kbin.AppendInt32(b, p.PreferredReadReplica)
			}
			recsLen := len(p.RecordBatches)
			switch {
			case p.RecordBatches == nil && flexible:
				b = append(b, 0)
			case p.RecordBatches == nil:
				b = kbin.AppendInt32(b, -1)
			case flexible:
				b = kbin.AppendUvarint(b, uint32(recsLen)+1)
			default:
				b = kbin.AppendInt32(b, int32(recsLen))
			}
			if recsLen >= inlineRecords {
				cuts = append(cuts, len(b))
				recs = append(recs, p.RecordBatches)
			} else {
				b = append(b, p.RecordBatches...)
			}
			if flexible {
				b = appendFetchPartitionTags(b, p)
			}
		}
		if flexible {
			b = append(b, 0) // no topic tags
		}
	}
	if flexible {
		b = append(b, 0) // no response tags
	}
	total := len(b) - frameSizeLen
	for _, r := range recs {
		total += len(r)
	}
	binary.BigEndian.PutUint32(b, uint32(total))
	if len(recs) == 0 {
		return [][]byte{b}, true
	}
	frame = make([][]byte, 0, 2*len(recs)+1)
	at := 0
	for i, cut := range cuts {
		if cut > at {
			frame = append(frame, b[at:cut:cut])
		}
		frame = append(frame, recs[i])
		at = cut
	}
	if at < len(b) {
		frame = append(frame, b[at:])
	}
	return frame, true
}

// plainFetchResponse reports whether resp holds only what encodeFetchFrame encodes: versions
// 4 to 13 (the ones served) and no unknown tagged fields or broker list.
func plainFetchResponse(resp *kmsg.FetchResponse) bool {
	if resp.Version < 4 || resp.Version > 13 || resp.UnknownTags.Len() > 0 || len(resp.Brokers) > 0 {
		return false
	}
	for i := range resp.Topics {
		t := &resp.Topics[i]
		if t.UnknownTags.Len() > 0 {
			return false
		}
		for j := range t.Partitions {
			p := &t.Partitions[j]
			if p.UnknownTags.Len() > 0 || p.DivergingEpoch.UnknownTags.Len() > 0 ||
				p.CurrentLeader.UnknownTags.Len() > 0 || p.SnapshotID.UnknownTags.Len() > 0 {
				return false
			}
			for k := range p.AbortedTransactions {
				if p.AbortedTransactions[k].UnknownTags.Len() > 0 {
					return false
				}
			}
		}
	}
	return true
}

func appendArrayLen(b []byte, n int, flexible bool) []byte {
	if flexible {
		return kbin.AppendCompactArrayLen(b, n)
	}
	return kbin.AppendArrayLen(b, n)
}

// appendFetchPartitionTags appends a partition's tagged fields (v12+): the diverging epoch
// (tag 0), the current leader (1) and the snapshot id (2), each only when not at its default.
func appendFetchPartitionTags(b []byte, p *kmsg.FetchResponseTopicPartition) []byte {
	diverging := p.DivergingEpoch.Epoch != -1 || p.DivergingEpoch.EndOffset != -1
	leader := p.CurrentLeader.LeaderID != -1 || p.CurrentLeader.LeaderEpoch != -1
	snapshot := p.SnapshotID.EndOffset != -1 || p.SnapshotID.Epoch != -1
	n := uint32(0)
	for _, set := range [...]bool{diverging, leader, snapshot} {
		if set {
			n++
		}
	}
	b = kbin.AppendUvarint(b, n)
	if diverging {
		b = append(b, 0, 4+8+1) // tag, size: epoch, end offset, no tags
		b = kbin.AppendInt32(b, p.DivergingEpoch.Epoch)
		b = kbin.AppendInt64(b, p.DivergingEpoch.EndOffset)
		b = append(b, 0)
	}
	if leader {
		b = append(b, 1, 4+4+1) // tag, size: leader id, leader epoch, no tags
		b = kbin.AppendInt32(b, p.CurrentLeader.LeaderID)
		b = kbin.AppendInt32(b, p.CurrentLeader.LeaderEpoch)
		b = append(b, 0)
	}
	if snapshot {
		b = append(b, 2, 8+4+1) // tag, size: end offset, epoch, no tags
		b = kbin.AppendInt64(b, p.SnapshotID.EndOffset)
		b = kbin.AppendInt32(b, p.SnapshotID.Epoch)
		b = append(b, 0)
	}
	return b
}
