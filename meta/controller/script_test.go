package controller_test

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtail/ringtail/internal/scripttest"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
)

// TestScripts runs the scenario files in testdata/ (internal/scripttest; -rewrite regenerates
// the outputs). A script drives one Controller over a meta.State, applying every command it
// returns with meta.Apply, on a clock that moves only when told. Commands:
//
//	cluster brokers=N [racks=a,b,...]   InitCluster and N brokers registered (fenced)
//	controller [session=D] [preferred=D] [grace=D] [disconnect-grace=D]
//	                                    a new Controller at the current time (a failover)
//	register id=B [rack=R]              a new incarnation of broker B registers
//	heartbeat ids=1,2 [epoch=E] [conn=C] heartbeats at the brokers' current epochs, or at E, on
//	                                    connection C (0, in process, by default)
//	disconnect id=B conn=C [epoch=E]    Disconnected: connection C of broker B closed
//	refused id=B [epoch=E] [ago=D]      ListenerRefused: broker B's listener refused a
//	                                    connection D ago (default now)
//	advance by=D                        moves the clock
//	tick                                Tick, its commands applied in order
//	shutdown id=B [epoch=E] [conn=C]    ControlledShutdown, its commands applied
//	repeat                              the last commands applied again (a retried proposal)
//	placement partitions=P rf=R [topic=T]  Placement (new partitions of T after its own)
//	create-topic name=T partitions=P rf=R [unclean=true]  Placement and CreateTopic
//	add-partitions name=T count=P          Placement and CreatePartitions
//	isr-add topic=T p=P id=B            B joins the ISR (what replication proposes)
//	alter-partition topic=T p=P from=B isr=1,2 [epochs=E1,E2] [broker-epoch=E] [leader-epoch=E]
//	    [partition-epoch=E] [by=name|id|wrong-id]
//	                                    AlterPartition from B (epochs default to the state's;
//	                                    by: how the topic is named), its change applied
//	unregister id=B                     UnregisterBroker at B's current epoch
//	begin-shutdown id=B                 BeginControlledShutdown alone (the first command of shutdown)
//	deadline                            NextDeadline
//	show                                brokers and partitions
func TestScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		e := &scriptEnv{st: meta.NewState(), now: time.Unix(1_000_000, 0)}
		e.start = e.now
		e.ctrl = controller.New(controller.Config{}, e.now)
		scripttest.Run(t, path, e.handle)
	})
}

type scriptEnv struct {
	st         *meta.State
	ctrl       *controller.Controller
	start, now time.Time
	nextInc    uint64 // incarnations are drawn from a counter
	nextTopic  uint64
	last       []meta.Command
}

func (e *scriptEnv) handle(t *testing.T, d *scripttest.TestData) string {
	switch d.Cmd {
	case "cluster":
		if _, err := meta.Apply(e.st, meta.InitCluster{ClusterID: "c"}); err != nil {
			d.Fatalf(t, "%v", err)
		}
		racks := strings.Split(arg(d, "racks"), ",")
		var out []string
		for i := 1; i <= int(intArg(t, d, "brokers")); i++ {
			rack := ""
			if i-1 < len(racks) {
				rack = racks[i-1]
			}
			out = append(out, e.register(int32(i), rack))
		}
		return strings.Join(out, "\n")
	case "controller":
		cfg := controller.Config{SessionTimeout: durationArg(t, d, "session"), PreferredLeaderInterval: durationArg(t, d, "preferred"),
			TakeoverGrace: durationArg(t, d, "grace"), DisconnectGrace: durationArg(t, d, "disconnect-grace")}
		e.ctrl = controller.New(cfg, e.now)
		return "controller at " + e.clock()
	case "register":
		return e.register(int32(intArg(t, d, "id")), arg(d, "rack"))
	case "heartbeat":
		var out []string
		for _, id := range int32s(t, d, arg(d, "ids")) {
			b, _ := e.st.Broker(id)
			epoch := b.Epoch
			if _, ok := d.Arg("epoch"); ok {
				epoch = intArg(t, d, "epoch")
			}
			if err := e.ctrl.Heartbeat(e.st, id, epoch, uint64(optInt(t, d, "conn")), e.now); err != nil {
				out = append(out, err.Error())
			}
		}
		if len(out) == 0 {
			return "ok"
		}
		return strings.Join(out, "\n")
	case "disconnect":
		id := int32(intArg(t, d, "id"))
		b, _ := e.st.Broker(id)
		epoch := b.Epoch
		if _, ok := d.Arg("epoch"); ok {
			epoch = intArg(t, d, "epoch")
		}
		if err := e.ctrl.Disconnected(e.st, id, epoch, uint64(intArg(t, d, "conn")), e.now); err != nil {
			return "ignored: " + err.Error()
		}
		return "ok"
	case "refused":
		id := int32(intArg(t, d, "id"))
		b, _ := e.st.Broker(id)
		epoch := b.Epoch
		if _, ok := d.Arg("epoch"); ok {
			epoch = intArg(t, d, "epoch")
		}
		if err := e.ctrl.ListenerRefused(e.st, id, epoch, e.now.Add(-durationArg(t, d, "ago"))); err != nil {
			return "ignored: " + err.Error()
		}
		return "ok"
	case "advance":
		e.now = e.now.Add(durationArg(t, d, "by"))
		return e.clock()
	case "tick":
		cmds, err := e.ctrl.Tick(e.st, e.now)
		return e.applyAll(cmds, err)
	case "shutdown":
		id := int32(intArg(t, d, "id"))
		b, _ := e.st.Broker(id)
		epoch := b.Epoch
		if _, ok := d.Arg("epoch"); ok {
			epoch = intArg(t, d, "epoch")
		}
		cmds, err := e.ctrl.ControlledShutdown(e.st, id, epoch, uint64(optInt(t, d, "conn")), e.now)
		return e.applyAll(cmds, err)
	case "repeat":
		var out []string
		for _, cmd := range e.last {
			_, err := meta.Apply(e.st, cmd)
			out = append(out, fmt.Sprintf("%s\n  => %v", formatCommand(cmd), err))
		}
		return strings.Join(out, "\n")
	case "placement":
		var existing [][]int32
		if topic, ok := d.Arg("topic"); ok {
			existing = replicaLists(e.st, topic)
		}
		lists, err := controller.Placement(e.st, int(intArg(t, d, "partitions")), int(intArg(t, d, "rf")), existing)
		if err != nil {
			return "error: " + err.Error()
		}
		return formatPlacement(e.st, lists)
	case "create-topic":
		lists, err := controller.Placement(e.st, int(intArg(t, d, "partitions")), int(intArg(t, d, "rf")), nil)
		if err != nil {
			return "error: " + err.Error()
		}
		e.nextTopic++
		var id [16]byte
		binary.BigEndian.PutUint64(id[8:], e.nextTopic)
		var configs map[string]string
		if _, ok := d.Arg("unclean"); ok {
			configs = map[string]string{"unclean.leader.election.enable": arg(d, "unclean")}
		}
		return e.apply(meta.CreateTopic{Name: arg(d, "name"), ID: id, Configs: configs, Partitions: controller.NewPartitions(lists)})
	case "add-partitions":
		name := arg(d, "name")
		top, _ := e.st.Topic(name)
		lists, err := controller.Placement(e.st, int(intArg(t, d, "count")), len(top.Assignments[0].Replicas), replicaLists(e.st, name))
		if err != nil {
			return "error: " + err.Error()
		}
		return e.apply(meta.CreatePartitions{Name: name, ID: top.ID, ExpectedCount: top.Partitions, Partitions: controller.NewPartitions(lists)})
	case "isr-add":
		name, p := arg(d, "topic"), int32(intArg(t, d, "p"))
		top, _ := e.st.Topic(name)
		a := top.Assignments[p]
		isr := append(append([]int32{}, a.ISR...), int32(intArg(t, d, "id")))
		return e.apply(meta.ChangePartitions{Changes: []meta.PartitionChange{{Topic: name, TopicID: top.ID, Partition: p,
			ExpectedPartitionEpoch: a.PartitionEpoch, Leader: a.Leader, ISR: isr}}})
	case "alter-partition":
		return e.alterPartition(t, d)
	case "begin-shutdown":
		id := int32(intArg(t, d, "id"))
		b, _ := e.st.Broker(id)
		return e.apply(meta.BeginControlledShutdown{ID: id, Epoch: b.Epoch})
	case "unregister":
		id := int32(intArg(t, d, "id"))
		b, _ := e.st.Broker(id)
		if _, err := meta.Apply(e.st, meta.UnregisterBroker{ID: id, Epoch: b.Epoch}); err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("broker %d unregistered", id)
	case "deadline":
		d, ok := e.ctrl.NextDeadline(e.st)
		if !ok {
			return "none"
		}
		return "t=" + d.Sub(e.start).String()
	case "show":
		return formatState(e.st)
	}
	d.Fatalf(t, "unknown command")
	return ""
}

// alterPartition runs controller.AlterPartition and applies the change it returns, as the
// node proposes it.
func (e *scriptEnv) alterPartition(t *testing.T, d *scripttest.TestData) string {
	name, p, from := arg(d, "topic"), int32(intArg(t, d, "p")), int32(intArg(t, d, "from"))
	top, _ := e.st.Topic(name)
	req := controller.AlterPartitionRequest{Topic: name, TopicID: top.ID, Partition: p, LeaderEpoch: -1, PartitionEpoch: -1}
	if int(p) < len(top.Assignments) {
		req.LeaderEpoch, req.PartitionEpoch = top.Assignments[p].LeaderEpoch, top.Assignments[p].PartitionEpoch
	}
	switch arg(d, "by") {
	case "name":
		req.TopicID = [16]byte{}
	case "wrong-id":
		req.TopicID[0] ^= 0xff
	}
	b, _ := e.st.Broker(from)
	epoch := b.Epoch
	if _, ok := d.Arg("broker-epoch"); ok {
		epoch = intArg(t, d, "broker-epoch")
	}
	if _, ok := d.Arg("leader-epoch"); ok {
		req.LeaderEpoch = int32(intArg(t, d, "leader-epoch"))
	}
	if _, ok := d.Arg("partition-epoch"); ok {
		req.PartitionEpoch = int32(intArg(t, d, "partition-epoch"))
	}
	var epochs []int32
	if v, ok := d.Arg("epochs"); ok {
		epochs = int32s(t, d, v)
	}
	if v := arg(d, "isr"); v != "" {
		for i, id := range int32s(t, d, v) {
			m := controller.ISRMember{ID: id, BrokerEpoch: -1}
			if i < len(epochs) {
				m.BrokerEpoch = int64(epochs[i])
			}
			req.NewISR = append(req.NewISR, m)
		}
	}
	res, err := controller.AlterPartition(e.st, from, epoch, req)
	if err != nil {
		return "error: " + err.Error()
	}
	answer := fmt.Sprintf("answer %s-%d leader=%d leader-epoch=%d partition-epoch=%d isr=%v", res.Topic, p, res.Leader, res.LeaderEpoch, res.PartitionEpoch, res.ISR)
	if res.Change == nil {
		return "nothing to propose\n" + answer
	}
	cmd := meta.ChangePartitions{Changes: []meta.PartitionChange{*res.Change}}
	e.last = []meta.Command{cmd}
	out := e.apply(cmd) + "\n" + answer
	if a, _ := e.st.Partition(res.Topic, p); a.Leader != res.Leader || a.LeaderEpoch != res.LeaderEpoch || a.PartitionEpoch != res.PartitionEpoch || fmt.Sprint(a.ISR) != fmt.Sprint(res.ISR) {
		d.Fatalf(t, "the answer differs from the state after the change: %+v", a)
	}
	return out
}

func (e *scriptEnv) clock() string { return "t=" + e.now.Sub(e.start).String() }

func (e *scriptEnv) register(id int32, rack string) string {
	e.nextInc++
	var inc [16]byte
	binary.BigEndian.PutUint64(inc[8:], e.nextInc)
	res, err := meta.Apply(e.st, meta.RegisterBroker{ID: id, Incarnation: inc, Listener: fmt.Sprintf("b%d:9092", id), Rack: rack})
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("broker %d registered at epoch %d", id, res.BrokerEpoch)
}

// applyAll applies the controller's commands in order, as its caller proposes them, and
// shows each with its outcome.
func (e *scriptEnv) applyAll(cmds []meta.Command, err error) string {
	var out []string
	if err != nil {
		out = append(out, "error: "+err.Error())
	}
	for _, cmd := range cmds {
		out = append(out, e.apply(cmd))
	}
	e.last = cmds
	if len(out) == 0 {
		return "nothing to do"
	}
	return strings.Join(out, "\n")
}

func (e *scriptEnv) apply(cmd meta.Command) string {
	if _, err := meta.Apply(e.st, cmd); err != nil {
		return formatCommand(cmd) + ": error: " + err.Error()
	}
	return formatCommand(cmd)
}

func formatCommand(cmd meta.Command) string {
	switch c := cmd.(type) {
	case meta.UnfenceBroker:
		return fmt.Sprintf("unfence broker %d epoch %d", c.ID, c.Epoch)
	case meta.FenceBroker:
		return fmt.Sprintf("fence broker %d epoch %d", c.ID, c.Epoch)
	case meta.BeginControlledShutdown:
		return fmt.Sprintf("begin controlled shutdown of broker %d epoch %d", c.ID, c.Epoch)
	case meta.ChangePartitions:
		lines := []string{"change partitions"}
		for _, ch := range c.Changes {
			lines = append(lines, fmt.Sprintf("  %s-%d expect partition-epoch=%d: leader=%d isr=%v", ch.Topic, ch.Partition, ch.ExpectedPartitionEpoch, ch.Leader, ch.ISR))
		}
		return strings.Join(lines, "\n")
	case meta.CreateTopic:
		return fmt.Sprintf("create topic %s\n%s", c.Name, formatNew(c.Partitions))
	case meta.CreatePartitions:
		return fmt.Sprintf("create partitions of %s after %d\n%s", c.Name, c.ExpectedCount, formatNew(c.Partitions))
	}
	return fmt.Sprintf("%#v", cmd)
}

func formatNew(ps []meta.NewPartition) string {
	var lines []string
	for _, p := range ps {
		lines = append(lines, fmt.Sprintf("  replicas=%v", p.Replicas))
	}
	return strings.Join(lines, "\n")
}

func replicaLists(st *meta.State, topic string) [][]int32 {
	top, _ := st.Topic(topic)
	var lists [][]int32
	for _, a := range top.Assignments {
		lists = append(lists, a.Replicas)
	}
	return lists
}

// formatPlacement shows the replica lists, then per broker how many replicas and preferred
// leaderships it holds over every topic, these lists included.
func formatPlacement(st *meta.State, lists [][]int32) string {
	var lines []string
	for i, r := range lists {
		line := fmt.Sprintf("p%d %v", i, r)
		if racks := racksOf(st, r); racks != "" {
			line += " racks " + racks
		}
		lines = append(lines, line)
	}
	replicas, leaders := map[int32]int{}, map[int32]int{}
	for _, top := range st.Topics() {
		for _, a := range top.Assignments {
			count(replicas, leaders, a.Replicas)
		}
	}
	for _, r := range lists {
		count(replicas, leaders, r)
	}
	for _, b := range st.Brokers() {
		lines = append(lines, fmt.Sprintf("broker %d: replicas=%d leaders=%d", b.ID, replicas[b.ID], leaders[b.ID]))
	}
	return strings.Join(lines, "\n")
}

func count(replicas, leaders map[int32]int, r []int32) {
	for _, b := range r {
		replicas[b]++
	}
	leaders[r[0]]++
}

func racksOf(st *meta.State, r []int32) string {
	var racks []string
	for _, id := range r {
		b, _ := st.Broker(id)
		if b.Rack == "" {
			return ""
		}
		racks = append(racks, b.Rack)
	}
	return strings.Join(racks, ",")
}

func formatState(st *meta.State) string {
	var lines []string
	for _, b := range st.Brokers() {
		line := fmt.Sprintf("broker %d epoch=%d", b.ID, b.Epoch)
		if b.Rack != "" {
			line += " rack=" + b.Rack
		}
		if b.Fenced {
			line += " fenced"
		}
		if b.InControlledShutdown {
			line += " shutting-down"
		}
		if led := st.PartitionsLedBy(b.ID); len(led) > 0 {
			line += fmt.Sprintf(" leads=%d", len(led))
		}
		lines = append(lines, line)
	}
	for _, top := range st.Topics() {
		for i, a := range top.Assignments {
			lines = append(lines, fmt.Sprintf("%s-%d replicas=%v leader=%d leader-epoch=%d partition-epoch=%d isr=%v",
				top.Name, i, a.Replicas, a.Leader, a.LeaderEpoch, a.PartitionEpoch, a.ISR))
		}
	}
	return strings.Join(lines, "\n")
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

// optInt is intArg with 0 when the argument is missing.
func optInt(t *testing.T, d *scripttest.TestData, key string) int64 {
	if _, ok := d.Arg(key); !ok {
		return 0
	}
	return intArg(t, d, key)
}

func durationArg(t *testing.T, d *scripttest.TestData, key string) time.Duration {
	v, ok := d.Arg(key)
	if !ok {
		return 0
	}
	dur, err := time.ParseDuration(v)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return dur
}

func int32s(t *testing.T, d *scripttest.TestData, s string) []int32 {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			d.Fatalf(t, "broker list %q: %v", s, err)
		}
		out = append(out, int32(n))
	}
	return out
}
