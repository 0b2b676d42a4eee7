package meta

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ringtail/ringtail/internal/scripttest"
)

// TestScripts runs the scenario files in testdata/ (internal/scripttest; -rewrite regenerates
// the outputs). Each script drives a LocalLog in a fresh directory, snapshotting every 3
// commands so restarts replay a snapshot and a command file. Commands:
//
//	init cluster=ID
//	create-topic name=N id=I [partitions=P replicas=1,2 | assign=1,2|2,3] [isr=1,2] [leader=L] [configs=k=v,...]
//	delete-topic name=N id=I
//	set-configs name=N id=I epoch=E [configs=k=v,...]
//	create-partitions name=N id=I expect=C [count=P replicas=1,2 | assign=...] [isr=...] [leader=L]
//	allocate-producer-ids count=C
//	register id=B inc=N [listener=H:P] [repl=H:P] [rack=R]
//	fence|unfence|begin-shutdown|unregister id=B epoch=E
//	change-partitions  one change per input line: TOPIC id=I p=P expect=E leader=L isr=1,2
//	led-by id=B | on id=B   the partitions broker B leads, or has a replica of
//	show              the whole state
//	snapshot          checks Snapshot then Restore gives an equal state
//	restart           closes the log and opens it again from its files
//
// Topic ids and incarnations are written as small numbers (id=7 is the id ending in 7). Every command is also
// encoded, decoded and checked equal, and applied to a copy of the state to check the log
// returns what the pure Apply does.
func TestScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		e := &scriptEnv{dir: t.TempDir()}
		e.open(t)
		defer func() { e.log.Close() }()
		scripttest.Run(t, path, e.handle)
	})
}

type scriptEnv struct {
	dir string
	log *LocalLog
}

func (e *scriptEnv) open(t *testing.T) {
	l, err := OpenLocalLog(LocalLogConfig{Dir: e.dir, NodeID: 1, SnapshotEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.log = l
}

func (e *scriptEnv) handle(t *testing.T, d *scripttest.TestData) string {
	var cmd Command
	switch d.Cmd {
	case "init":
		cmd = InitCluster{ClusterID: arg(d, "cluster")}
	case "create-topic":
		cmd = CreateTopic{Name: arg(d, "name"), ID: scriptID(t, d), Configs: configsArg(t, d), Partitions: placementArg(t, d, "partitions")}
	case "delete-topic":
		cmd = DeleteTopic{Name: arg(d, "name"), ID: scriptID(t, d)}
	case "set-configs":
		cmd = SetTopicConfigs{Name: arg(d, "name"), ID: scriptID(t, d), ConfigEpoch: int32(intArg(t, d, "epoch")), Configs: configsArg(t, d)}
	case "create-partitions":
		cmd = CreatePartitions{Name: arg(d, "name"), ID: scriptID(t, d), ExpectedCount: int32(intArg(t, d, "expect")), Partitions: placementArg(t, d, "count")}
	case "allocate-producer-ids":
		cmd = AllocateProducerIDs{Count: intArg(t, d, "count")}
	case "register":
		id := int32(intArg(t, d, "id"))
		listener, ok := d.Arg("listener")
		if !ok {
			listener = fmt.Sprintf("b%d:9092", id)
		}
		cmd = RegisterBroker{ID: id, Incarnation: smallID(intArg(t, d, "inc")), Listener: listener, ReplicationAddr: arg(d, "repl"), Rack: arg(d, "rack")}
	case "fence":
		cmd = FenceBroker{ID: int32(intArg(t, d, "id")), Epoch: intArg(t, d, "epoch")}
	case "unfence":
		cmd = UnfenceBroker{ID: int32(intArg(t, d, "id")), Epoch: intArg(t, d, "epoch")}
	case "begin-shutdown":
		cmd = BeginControlledShutdown{ID: int32(intArg(t, d, "id")), Epoch: intArg(t, d, "epoch")}
	case "unregister":
		cmd = UnregisterBroker{ID: int32(intArg(t, d, "id")), Epoch: intArg(t, d, "epoch")}
	case "change-partitions":
		cmd = ChangePartitions{Changes: changesInput(t, d)}
	case "led-by":
		return formatRefs(e.log.State().PartitionsLedBy(int32(intArg(t, d, "id"))))
	case "on":
		return formatRefs(e.log.State().PartitionsOn(int32(intArg(t, d, "id"))))
	case "show":
		return formatState(e.log.State())
	case "snapshot":
		st := e.log.State()
		restored := NewState()
		if err := restored.Restore(st.Snapshot()); err != nil {
			d.Fatalf(t, "%v", err)
		}
		if !bytes.Equal(restored.Snapshot(), st.Snapshot()) || formatState(restored) != formatState(st) {
			return "restored state differs:\n" + formatState(restored)
		}
		return "restores to an equal state"
	case "restart":
		if err := e.log.Close(); err != nil {
			d.Fatalf(t, "%v", err)
		}
		e.open(t)
		return formatState(e.log.State())
	default:
		d.Fatalf(t, "unknown command")
	}

	enc := EncodeCommand(cmd)
	if got, err := DecodeCommand(enc); err != nil || !bytes.Equal(EncodeCommand(got), enc) {
		d.Fatalf(t, "encoding round trip: %#v, %v", got, err)
	}
	pure, pureErr := Apply(e.log.State().Clone(), cmd)
	res, err := e.log.Propose(context.Background(), cmd)
	if fmt.Sprint(err) != fmt.Sprint(pureErr) || !reflect.DeepEqual(res, pure) {
		d.Fatalf(t, "the log returned %+v, %v; Apply %+v, %v", res, err, pure, pureErr)
	}
	if err != nil {
		return "error: " + err.Error()
	}
	switch cmd.(type) {
	case InitCluster:
		return "ok"
	case DeleteTopic:
		return "deleted " + formatTopic(res.Topic)
	case AllocateProducerIDs:
		return fmt.Sprintf("first id %d", res.ProducerID)
	case RegisterBroker:
		return fmt.Sprintf("broker epoch %d", res.BrokerEpoch)
	case FenceBroker, UnfenceBroker, BeginControlledShutdown, UnregisterBroker:
		return "ok"
	case ChangePartitions:
		var lines []string
		for _, ch := range cmd.(ChangePartitions).Changes {
			a, _ := e.log.State().Partition(ch.Topic, ch.Partition)
			lines = append(lines, fmt.Sprintf("%s-%d %s", ch.Topic, ch.Partition, formatAssignment(a)))
		}
		return strings.Join(lines, "\n")
	}
	return formatTopic(res.Topic)
}

// changesInput reads the partition changes of change-partitions, one per input line.
func changesInput(t *testing.T, d *scripttest.TestData) []PartitionChange {
	var cs []PartitionChange
	for _, line := range strings.Split(d.Input, "\n") {
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		ld := &scripttest.TestData{Pos: d.Pos, Cmd: words[0]}
		for _, w := range words[1:] {
			k, v, ok := strings.Cut(w, "=")
			ld.CmdArgs = append(ld.CmdArgs, scripttest.CmdArg{Key: k, Val: v, HasVal: ok})
		}
		cs = append(cs, PartitionChange{Topic: ld.Cmd, TopicID: scriptID(t, ld), Partition: int32(intArg(t, ld, "p")),
			ExpectedPartitionEpoch: int32(intArg(t, ld, "expect")), Leader: int32(intArg(t, ld, "leader")), ISR: int32sArg(t, ld, arg(ld, "isr"))})
	}
	return cs
}

func formatRefs(refs []PartitionRef) string {
	if len(refs) == 0 {
		return "none"
	}
	var out []string
	for _, r := range refs {
		out = append(out, fmt.Sprintf("%s-%d", r.Topic, r.Partition))
	}
	return strings.Join(out, " ")
}

func formatBroker(b Broker) string {
	var flags string
	if b.Fenced {
		flags += " fenced"
	}
	if b.InControlledShutdown {
		flags += " shutting-down"
	}
	return fmt.Sprintf("broker %d epoch=%d inc=%s listener=%s repl=%q rack=%q%s", b.ID, b.Epoch, formatScriptID(b.Incarnation), b.Listener, b.ReplicationAddr, b.Rack, flags)
}

func formatAssignment(a PartitionAssignment) string {
	return fmt.Sprintf("replicas=%v leader=%d leader-epoch=%d partition-epoch=%d isr=%v", a.Replicas, a.Leader, a.LeaderEpoch, a.PartitionEpoch, a.ISR)
}

func arg(d *scripttest.TestData, key string) string {
	v, _ := d.Arg(key)
	return v
}

func intArg(t *testing.T, d *scripttest.TestData, key string) int64 {
	v, ok := d.Arg(key)
	if !ok {
		d.Fatalf(t, "%s= missing", key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return n
}

// scriptID is the topic id written id=N: N in the last 8 bytes.
func scriptID(t *testing.T, d *scripttest.TestData) [16]byte {
	return smallID(intArg(t, d, "id"))
}

func smallID(n int64) (id [16]byte) {
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	return id
}

func formatScriptID(id [16]byte) string {
	if binary.BigEndian.Uint64(id[:8]) == 0 {
		return strconv.FormatUint(binary.BigEndian.Uint64(id[8:]), 10)
	}
	return formatID(id)
}

func configsArg(t *testing.T, d *scripttest.TestData) map[string]string {
	v, ok := d.Arg("configs")
	if !ok || v == "" {
		return nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			d.Fatalf(t, "config %q is not k=v", kv)
		}
		m[k] = v
	}
	return m
}

func int32sArg(t *testing.T, d *scripttest.TestData, s string) []int32 {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			d.Fatalf(t, "broker list %q: %v", s, err)
		}
		out = append(out, int32(n))
	}
	return out
}

// placementArg builds new partitions: assign=1,2|2,3 (one replica list per partition), or
// <countKey>=P partitions of replicas=... (default 1); ISR = the replicas and leader = the
// first unless isr= or leader= say otherwise.
func placementArg(t *testing.T, d *scripttest.TestData, countKey string) []NewPartition {
	var lists [][]int32
	if v, ok := d.Arg("assign"); ok {
		for _, l := range strings.Split(v, "|") {
			lists = append(lists, int32sArg(t, d, l))
		}
	} else {
		replicas := []int32{1}
		if v, ok := d.Arg("replicas"); ok {
			replicas = int32sArg(t, d, v)
		}
		for i := int64(0); i < intArg(t, d, countKey); i++ {
			lists = append(lists, replicas)
		}
	}
	ps := make([]NewPartition, len(lists))
	for i, r := range lists {
		ps[i] = NewPartition{Replicas: r, ISR: r}
		if len(r) > 0 {
			ps[i].Leader = r[0]
		}
		if v, ok := d.Arg("isr"); ok {
			ps[i].ISR = int32sArg(t, d, v)
		}
		if _, ok := d.Arg("leader"); ok {
			ps[i].Leader = int32(intArg(t, d, "leader"))
		}
	}
	return ps
}

func formatState(s *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster=%q next-producer-id=%d", s.ClusterID(), s.NextProducerID())
	if s.brokerEpoch != 0 {
		fmt.Fprintf(&b, " last-broker-epoch=%d", s.brokerEpoch)
	}
	for _, br := range s.Brokers() {
		b.WriteString("\n" + formatBroker(br))
	}
	for _, t := range s.Topics() {
		b.WriteString("\n" + formatTopic(t))
	}
	return b.String()
}

func formatTopic(t Topic) string {
	var b strings.Builder
	configs := "-"
	if len(t.Configs) > 0 {
		var kvs []string
		for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
			kvs = append(kvs, k+"="+t.Configs[k])
		}
		configs = strings.Join(kvs, ",")
	}
	fmt.Fprintf(&b, "%s id=%s partitions=%d config-epoch=%d configs=%s", t.Name, formatScriptID(t.ID), t.Partitions, t.ConfigEpoch, configs)
	for i, a := range t.Assignments {
		fmt.Fprintf(&b, "\n  p%d %s", i, formatAssignment(a))
	}
	return b.String()
}
