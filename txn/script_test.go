package txn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/internal/scripttest"
)

// TestScripts runs the scenario files in testdata/ (internal/scripttest; -rewrite regenerates
// the outputs). Commands:
//
//	init ID [pid=N epoch=N] [timeout=DUR] [v=N]   InitProducerId
//	add ID pid=N epoch=N [v=N] TOPIC/PART...      AddPartitionsToTxn (v3 unless v=)
//	verify ID pid=N epoch=N TOPIC/PART...         AddPartitionsToTxn v4 VerifyOnly
//	offsets ID pid=N epoch=N group=G              AddOffsetsToTxn
//	end ID pid=N epoch=N commit|abort [v=N]       EndTxn
//	persist | fail                                persist every held batch | fail the oldest
//	markers | markers-fail | markers-fenced       report every marker write out as done | failed |
//	                                              refused as a deposed coordinator's (ErrFenced)
//	tick DUR                                      advance the clock and Tick
//	restart [epoch=N]                             a new coordinator (of coordinator epoch N, default
//	                                              7) replays every persisted record
//	fenced                                        whether the coordinator was fenced
//	state ID | describe ID... | list [state=S]
func TestScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		h := newHarness()
		scripttest.Run(t, path, func(t *testing.T, d *scripttest.TestData) string { return h.command(t, d) })
	})
}

type held struct {
	id   BatchID
	recs []Record
}

type harness struct {
	c       *Coordinator
	now     time.Time
	nextPID int64
	reply   ReplyID
	held    []held
	log     []Record // persisted records, in order
	markers []Markers
	epoch   int32 // the coordinator epoch
	out     strings.Builder
}

func newHarness() *harness {
	h := &harness{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nextPID: 1000, epoch: 7}
	h.c = New(h.config())
	return h
}

func (h *harness) config() Config {
	return Config{
		CoordinatorEpoch: h.epoch,
		NewProducerID:    func() (int64, error) { h.nextPID++; return h.nextPID, nil },
		PartitionExists:  func(tp TopicPartition) bool { return tp.Topic != "missing" },
		OffsetsPartition: func(string) TopicPartition { return TopicPartition{"__consumer_offsets", 3} },
	}
}

func (h *harness) command(t *testing.T, d *scripttest.TestData) string {
	args := map[string]string{}
	var pos []string
	for _, a := range d.CmdArgs {
		if a.HasVal {
			args[a.Key] = a.Val
		} else {
			pos = append(pos, a.Key)
		}
	}
	num := func(k string, def int64) int64 {
		if args[k] == "" {
			return def
		}
		n, err := strconv.ParseInt(args[k], 10, 64)
		if err != nil {
			d.Fatalf(t, "%s: %v", k, err)
		}
		return n
	}
	dur := func(k string, def time.Duration) time.Duration {
		if args[k] == "" {
			return def
		}
		v, err := time.ParseDuration(args[k])
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		return v
	}
	tps := func(words []string) []kmsg.AddPartitionsToTxnRequestTransactionTopic {
		var out []kmsg.AddPartitionsToTxnRequestTransactionTopic
		for _, w := range words {
			topic, p, ok := strings.Cut(w, "/")
			n, err := strconv.Atoi(p)
			if !ok || err != nil {
				d.Fatalf(t, "partition %q", w)
			}
			if len(out) == 0 || out[len(out)-1].Topic != topic {
				tt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
				tt.Topic = topic
				out = append(out, tt)
			}
			out[len(out)-1].Partitions = append(out[len(out)-1].Partitions, int32(n))
		}
		return out
	}
	h.out.Reset()
	switch d.Cmd {
	case "init":
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = int16(num("v", 4))
		req.TransactionalID = &pos[0]
		req.TransactionTimeoutMillis = int32(dur("timeout", time.Minute) / time.Millisecond)
		req.ProducerID, req.ProducerEpoch = num("pid", -1), int16(num("epoch", -1))
		h.apply(h.c.InitProducerId(h.now, h.nextReply(), req))
	case "add", "verify":
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.Version = int16(num("v", 3))
		topics := tps(pos[1:])
		if d.Cmd == "verify" {
			req.Version = 4
		}
		if req.Version < 4 {
			req.TransactionalID, req.ProducerID, req.ProducerEpoch = pos[0], num("pid", -1), int16(num("epoch", -1))
			for _, tt := range topics {
				rt := kmsg.NewAddPartitionsToTxnRequestTopic()
				rt.Topic, rt.Partitions = tt.Topic, tt.Partitions
				req.Topics = append(req.Topics, rt)
			}
		} else {
			tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
			tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch = pos[0], num("pid", -1), int16(num("epoch", -1))
			tx.VerifyOnly, tx.Topics = d.Cmd == "verify", topics
			req.Transactions = append(req.Transactions, tx)
		}
		h.apply(h.c.AddPartitionsToTxn(h.now, h.nextReply(), req))
	case "offsets":
		req := kmsg.NewPtrAddOffsetsToTxnRequest()
		req.Version = 3
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = pos[0], num("pid", -1), int16(num("epoch", -1)), args["group"]
		h.apply(h.c.AddOffsetsToTxn(h.now, h.nextReply(), req))
	case "end":
		req := kmsg.NewPtrEndTxnRequest()
		req.Version = int16(num("v", 3))
		req.TransactionalID, req.ProducerID, req.ProducerEpoch = pos[0], num("pid", -1), int16(num("epoch", -1))
		req.Commit = pos[1] == "commit"
		h.apply(h.c.EndTxn(h.now, h.nextReply(), req))
	case "persist":
		hs := h.held
		h.held = nil
		for _, b := range hs {
			h.log = append(h.log, b.recs...)
			h.apply(h.c.Persisted(h.now, b.id, nil))
		}
	case "fail":
		if len(h.held) == 0 {
			d.Fatalf(t, "nothing held")
		}
		b := h.held[0]
		h.held = h.held[1:]
		h.apply(h.c.Persisted(h.now, b.id, kerr.NotLeaderForPartition))
	case "markers", "markers-fail", "markers-fenced":
		ms := h.markers
		h.markers = nil
		var err error
		switch d.Cmd {
		case "markers-fail":
			err = errors.New("leader not available")
		case "markers-fenced":
			err = fmt.Errorf("%w: a newer coordinator wrote the producer's last marker", ErrFenced)
		}
		for _, m := range ms {
			h.apply(h.c.MarkersWritten(h.now, m.TransactionalID, err))
		}
	case "tick":
		step, err := time.ParseDuration(pos[0])
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		h.now = h.now.Add(step)
		h.apply(h.c.Tick(h.now))
	case "restart":
		h.held, h.markers = nil, nil
		h.epoch = int32(num("epoch", 7))
		h.c = New(h.config())
		for _, r := range h.log {
			if err := h.c.Replay(r.Key, r.Value); err != nil {
				d.Fatalf(t, "replay: %v", err)
			}
		}
		h.apply(h.c.Loaded())
	case "fenced":
		return strconv.FormatBool(h.c.Fenced())
	case "state":
		m := h.c.txns[pos[0]]
		if m == nil {
			return "none"
		}
		fmt.Fprintf(&h.out, "%s pid=%d epoch=%d last=%d parts=%v", m.state, m.pid, m.epoch, m.lastEpoch, m.parts)
	case "describe":
		for _, s := range h.c.DescribeTransactions(pos) {
			fmt.Fprintf(&h.out, "%s %s %s pid=%d epoch=%d", s.TransactionalID, code(s.ErrorCode), s.State, s.ProducerID, s.ProducerEpoch)
			for _, tt := range s.Topics {
				fmt.Fprintf(&h.out, " %s%v", tt.Topic, tt.Partitions)
			}
			h.out.WriteString("\n")
		}
	case "list":
		req := kmsg.NewPtrListTransactionsRequest()
		if args["state"] != "" {
			req.StateFilters = []string{args["state"]}
		}
		ls, err := h.c.ListTransactions(h.now, req)
		if err != nil {
			return err.Error()
		}
		for _, s := range ls {
			fmt.Fprintf(&h.out, "%s pid=%d %s\n", s.TransactionalID, s.ProducerID, s.TransactionState)
		}
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
	}
	s := strings.TrimRight(h.out.String(), "\n")
	if s == "" {
		return "ok"
	}
	return s
}

func (h *harness) nextReply() ReplyID {
	h.reply++
	return h.reply
}

func code(c int16) string {
	if c == 0 {
		return "NONE"
	}
	return kerr.ErrorForCode(c).(*kerr.Error).Message
}

// apply records a Ready: responses printed, records held, markers out.
func (h *harness) apply(r Ready) {
	for _, o := range r.Send {
		fmt.Fprintf(&h.out, "#%d %s\n", o.Reply, describe(o.Response))
	}
	if len(r.Records) > 0 {
		h.held = append(h.held, held{r.Batch, r.Records})
		for _, rec := range r.Records {
			fmt.Fprintf(&h.out, "write batch %d: %s\n", r.Batch, describeRecord(rec))
		}
	}
	for _, m := range r.Markers {
		h.markers = append(h.markers, m)
		kind := "ABORT"
		if m.Commit {
			kind = "COMMIT"
		}
		fmt.Fprintf(&h.out, "markers %s %s pid=%d epoch=%d coordinator_epoch=%d %v\n", m.TransactionalID, kind, m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch, m.Partitions)
	}
}

func describe(r kmsg.Response) string {
	switch r := r.(type) {
	case *kmsg.InitProducerIDResponse:
		return fmt.Sprintf("init %s pid=%d epoch=%d", code(r.ErrorCode), r.ProducerID, r.ProducerEpoch)
	case *kmsg.AddPartitionsToTxnResponse:
		var b strings.Builder
		b.WriteString("add")
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				fmt.Fprintf(&b, " %s/%d=%s", t.Topic, p.Partition, code(p.ErrorCode))
			}
		}
		for _, tx := range r.Transactions {
			for _, t := range tx.Topics {
				for _, p := range t.Partitions {
					fmt.Fprintf(&b, " %s:%s/%d=%s", tx.TransactionalID, t.Topic, p.Partition, code(p.ErrorCode))
				}
			}
		}
		return b.String()
	case *kmsg.AddOffsetsToTxnResponse:
		return "offsets " + code(r.ErrorCode)
	case *kmsg.EndTxnResponse:
		return "end " + code(r.ErrorCode)
	}
	return fmt.Sprintf("%T", r)
}

func describeRecord(r Record) string {
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(r.Key); err != nil {
		return "bad key: " + err.Error()
	}
	if r.Value == nil {
		return k.TransactionalID + " tombstone"
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(r.Value); err != nil {
		return "bad value: " + err.Error()
	}
	s := fmt.Sprintf("%s %s pid=%d epoch=%d timeout=%dms", k.TransactionalID, v.State, v.ProducerID, v.ProducerEpoch, v.TimeoutMillis)
	for _, t := range v.Topics {
		s += fmt.Sprintf(" %s%v", t.Topic, t.Partitions)
	}
	return s
}
