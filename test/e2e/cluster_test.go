package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// Three brokers on loopback forming one cluster: metadata on Raft, a controller, fencing and
// elections; these tests hold the metadata (replication_test.go holds the partition data).

// clusterWait bounds each wait for the cluster to get somewhere (an election, a fencing after
// the 9 s session): generous, because a loaded CI machine is slow, and never a fixed sleep.
const clusterWait = 60 * time.Second

// startCluster3 starts three brokers with the cluster flags and waits until all three are
// registered and unfenced.
func startCluster3(t *testing.T) *cluster.Cluster {
	t.Helper()
	return startCluster3On(t, nil)
}

// startCluster3On is startCluster3 with the brokers in the namespaces of nw (nil: on
// loopback).
func startCluster3On(t *testing.T, nw *cluster.Network) *cluster.Cluster {
	t.Helper()
	return startCluster3With(t, cluster3Opts{network: nw})
}

// cluster3Opts says how startCluster3With runs the three brokers; the zero value is
// startCluster3's cluster.
type cluster3Opts struct {
	network *cluster.Network // brokers in its namespaces; nil: on loopback
	// debug gives each broker --debug-listen on its ExtraAddr("debug"), where it serves the
	// metadata it follows as JSON (/debug/ringtail/metadata): broker and partition epochs.
	debug bool
	// logDir, when set, also receives each broker's output as logDir/broker-<id>.log, for
	// people to read after a long run.
	logDir string
	// metrics gives each broker --metrics-listen on its ExtraAddr("metrics").
	metrics bool
	// args are more flags for every broker.
	args []string
}

// startCluster3With starts three brokers with the cluster flags as o says and waits until all
// three are registered and unfenced.
func startCluster3With(t *testing.T, o cluster3Opts) *cluster.Cluster {
	t.Helper()
	bin, err := cluster.Binary()
	if err != nil {
		t.Fatal(err)
	}
	ports := []string{"raft", "replication"}
	if o.debug {
		ports = append(ports, "debug")
	}
	if o.metrics {
		ports = append(ports, "metrics")
	}
	c := cluster.StartClusterT(t, cluster.ClusterConfig{
		Brokers: 3,
		Dir:     t.TempDir(),
		Bin:     bin,
		Network: o.network,
		LogDir:  o.logDir,
		Ports:   ports,
		BrokerArgs: func(b *cluster.Broker, all []*cluster.Broker) []string {
			args := []string{"--node-id", strconv.Itoa(b.ID()), "--raft-addr", b.ExtraAddr("raft"),
				"--replication-listen", b.ExtraAddr("replication"), "--peers", cluster.Peers(all, "raft")}
			if o.debug {
				args = append(args, "--debug-listen", b.ExtraAddr("debug"))
			}
			if o.metrics {
				args = append(args, "--metrics-listen", b.ExtraAddr("metrics"))
			}
			return append(args, o.args...)
		},
	})
	waitBrokers(t, c, c.Broker(1), []int32{1, 2, 3})
	return c
}

// metadataOf asks broker b for the metadata of topics (all when none).
func metadataOf(t *testing.T, b *cluster.Broker, topics ...string) (kadm.Metadata, error) {
	t.Helper()
	adm, err := b.Admin()
	if err != nil {
		return kadm.Metadata{}, err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return adm.Metadata(ctx, topics...)
}

// waitFor polls cond (nil: done) until clusterWait passes; it returns how long it took.
func waitCluster(t *testing.T, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < clusterWait {
		if last = cond(); last == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not after %v: %v", what, clusterWait, last)
	return 0
}

// waitBrokers waits until broker b lists exactly ids as live brokers.
func waitBrokers(t *testing.T, c *cluster.Cluster, b *cluster.Broker, ids []int32) {
	t.Helper()
	waitCluster(t, fmt.Sprintf("broker %d listing brokers %v", b.ID(), ids), func() error {
		md, err := metadataOf(t, b)
		if err != nil {
			return err
		}
		got := md.Brokers.NodeIDs()
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			return fmt.Errorf("live brokers %v", got)
		}
		return nil
	})
}

// createRF3 creates topic with partitions partitions of three replicas each.
func createRF3(t *testing.T, c *cluster.Cluster, topic string, partitions int32) {
	t.Helper()
	adm, err := c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), partitions, 3, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v %s", topic, err, resp.ErrMessage)
	}
	waitTopicEverywhere(t, c, topic, partitions)
}

// waitTopicEverywhere waits until every running broker reports topic with its partitions, each
// led: the broker that created it answered once the change committed, and the others apply it
// a moment later.
func waitTopicEverywhere(t *testing.T, c *cluster.Cluster, topic string, partitions int32) {
	t.Helper()
	for _, b := range c.Brokers() {
		if !b.Running() {
			continue
		}
		waitCluster(t, fmt.Sprintf("broker %d reporting %s", b.ID(), topic), func() error {
			ps, _, err := partitionsOf(t, b, topic)
			if err != nil {
				return err
			}
			if int32(len(ps)) != partitions {
				return fmt.Errorf("%d partitions", len(ps))
			}
			for p, pv := range ps {
				if pv.leader < 0 {
					return fmt.Errorf("partition %d has no leader", p)
				}
			}
			return nil
		})
	}
}

type partitionView struct {
	leader, epoch int32
	replicas, isr []int32
}

// partitionsOf is topic's partitions as broker b reports them.
func partitionsOf(t *testing.T, b *cluster.Broker, topic string) (map[int32]partitionView, int32, error) {
	md, err := metadataOf(t, b, topic)
	if err != nil {
		return nil, 0, err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return nil, 0, fmt.Errorf("topic %s: %v", topic, td.Err)
	}
	out := make(map[int32]partitionView)
	for p, pd := range td.Partitions {
		out[p] = partitionView{leader: pd.Leader, epoch: pd.LeaderEpoch, replicas: pd.Replicas, isr: pd.ISR}
	}
	return out, md.Controller, nil
}

// TestClusterMetadata: three brokers form one cluster; an RF=3 topic's replicas and leaders are
// spread evenly, every broker serves the same metadata, and records produced through any
// broker reach each partition's leader and are read back.
func TestClusterMetadata(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 6)
	var want map[int32]partitionView
	waitCluster(t, "same metadata from every broker", func() error {
		for _, b := range c.Brokers() {
			got, ctrl, err := partitionsOf(t, b, topic)
			if err != nil {
				return err
			}
			if ctrl < 1 || ctrl > 3 {
				return fmt.Errorf("broker %d names controller %d", b.ID(), ctrl)
			}
			if want == nil {
				want = got
				continue
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("broker %d says %v, broker 1 %v", b.ID(), got, want)
			}
		}
		return nil
	})
	led := map[int32]int{}
	for p, pv := range want {
		if len(pv.replicas) != 3 || len(pv.isr) != 3 || pv.leader != pv.replicas[0] {
			t.Errorf("partition %d: %+v, want 3 replicas, all in sync, led by the first", p, pv)
		}
		led[pv.leader]++
	}
	for id := int32(1); id <= 3; id++ {
		if led[id] != 2 {
			t.Errorf("broker %d leads %d of 6 partitions, want 2 (%v)", id, led[id], led)
		}
	}

	cl := c.Broker(3).ClientT(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := 0; i < 60; i++ {
		produceSync(t, cl, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	got := consumeAll(t, &Broker{Broker: c.Broker(2), t: t}, topic)
	n := 0
	for _, rs := range got {
		n += len(rs)
	}
	if n != 60 {
		t.Fatalf("read back %d records, want 60", n)
	}
	checkContiguous(t, got)
}

// TestClusterControllerKill: kill -9 of the controller; another broker becomes the controller
// and the killed broker's leaderships move to the others, with bumped leader epochs.
func TestClusterControllerKill(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 6)
	before, ctrl, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	dead := c.Broker(int(ctrl))
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	alive := c.Broker(int(ctrl)%3 + 1)
	took := waitCluster(t, "a new controller", func() error {
		_, now, err := partitionsOf(t, alive, topic)
		if err != nil {
			return err
		}
		if now == ctrl || now < 1 {
			return fmt.Errorf("controller %d", now)
		}
		return nil
	})
	t.Logf("new controller %v after kill -9 of controller %d", took.Round(time.Millisecond), ctrl)
	took = waitCluster(t, "leaderships off the killed broker", func() error {
		now, _, err := partitionsOf(t, alive, topic)
		if err != nil {
			return err
		}
		for p, pv := range now {
			if pv.leader == ctrl || pv.leader < 0 {
				return fmt.Errorf("partition %d led by %d", p, pv.leader)
			}
		}
		return nil
	})
	t.Logf("leaderships moved %v after the kill", took.Round(time.Millisecond))
	now, _, _ := partitionsOf(t, alive, topic)
	for p, pv := range now {
		if before[p].leader == ctrl && pv.epoch <= before[p].epoch {
			t.Errorf("partition %d moved from broker %d without a new leader epoch (%d, was %d)", p, ctrl, pv.epoch, before[p].epoch)
		}
		if slices.Contains(pv.isr, ctrl) {
			t.Errorf("partition %d keeps the killed broker %d in its ISR %v", p, ctrl, pv.isr)
		}
	}
	if err := dead.Restart(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, c, alive, []int32{1, 2, 3})
}

// TestClusterFenceOnPause: a broker stopped (SIGSTOP) past its session is fenced and its
// leaderships move; resumed (SIGCONT), it is unfenced again.
func TestClusterFenceOnPause(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 3)
	_, ctrl, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	victim := int32(ctrl)%3 + 1 // not the controller
	other := c.Broker(int(victim)%3 + 1)
	if err := c.Broker(int(victim)).Pause(); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, c, other, without([]int32{1, 2, 3}, victim))
	waitCluster(t, "leaderships off the paused broker", func() error {
		now, _, err := partitionsOf(t, other, topic)
		if err != nil {
			return err
		}
		for p, pv := range now {
			if pv.leader == victim || pv.leader < 0 {
				return fmt.Errorf("partition %d led by %d", p, pv.leader)
			}
		}
		return nil
	})
	if err := c.Broker(int(victim)).Resume(); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, c, other, []int32{1, 2, 3})
}

// TestClusterControlledShutdown: SIGTERM moves a broker's leaderships away before it exits,
// without waiting for its session to run out.
func TestClusterControlledShutdown(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 6)
	_, ctrl, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	leaving := int32(ctrl)%3 + 1
	if err := c.Broker(int(leaving)).Stop(); err != nil {
		t.Fatal(err)
	}
	// Right after the exit: nothing may be left on the stopped broker (a session has not
	// passed, so only the controlled shutdown can have moved them). Asked of the controller,
	// which applied the moves before it let the broker go; another broker's copy of the
	// metadata may still be a few entries behind.
	now, _, err := partitionsOf(t, c.Broker(int(ctrl)), topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, pv := range now {
		if pv.leader == leaving || pv.leader < 0 {
			t.Errorf("partition %d led by %d right after broker %d stopped", p, pv.leader, leaving)
		}
	}
	if !strings.Contains(c.Broker(int(leaving)).Log(), "controlled shutdown done") {
		t.Errorf("broker %d did not log its controlled shutdown", leaving)
	}
}

// TestClusterLastBrokerStopsWithoutWaiting: two brokers stop one after the other (each hands
// its leaderships on); the last one, whose metadata shows no other live broker, stops without
// asking a controller that no quorum could give it (it waited for a controller that never came).
func TestClusterLastBrokerStopsWithoutWaiting(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 3)
	for _, id := range []int{1, 2} {
		if err := c.Broker(id).Stop(); err != nil {
			t.Fatal(err)
		}
		if log := c.Broker(id).Log(); !strings.Contains(log, "controlled shutdown done") {
			t.Fatalf("broker %d did not hand on its leaderships", id)
		}
	}
	last := c.Broker(3)
	waitCluster(t, "broker 3 seeing itself as the only live broker", func() error {
		md, err := metadataOf(t, last)
		if err != nil {
			return err
		}
		if len(md.Brokers) != 1 || md.Brokers[0].NodeID != 3 {
			return fmt.Errorf("live brokers %v", md.Brokers.NodeIDs())
		}
		return nil
	})
	if err := last.Stop(); err != nil {
		t.Fatal(err)
	}
	log := last.Log()
	if !strings.Contains(log, "no other live broker to take this node's leaderships") {
		t.Errorf("the last broker did not stop at once; its log:\n%s", tail(log, 3000))
	}
	if strings.Contains(log, "no controller answers") {
		t.Errorf("the last broker waited for a controller")
	}
}

// TestClusterColdRestart: every broker killed at once and started again; every topic, replica
// set and leader epoch is back (epochs never lower).
func TestClusterColdRestart(t *testing.T) {
	c := startCluster3(t)
	topics := []string{topicName(t, "a"), topicName(t, "b")}
	before := map[string]map[int32]partitionView{}
	for _, topic := range topics {
		createRF3(t, c, topic, 4)
		pv, _, err := partitionsOf(t, c.Broker(2), topic)
		if err != nil {
			t.Fatal(err)
		}
		before[topic] = pv
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		waitCluster(t, "topic "+topic+" back", func() error {
			now, _, err := partitionsOf(t, c.Broker(3), topic)
			if err != nil {
				return err
			}
			if len(now) != len(before[topic]) {
				return fmt.Errorf("%d partitions, want %d", len(now), len(before[topic]))
			}
			for p, pv := range now {
				b := before[topic][p]
				if !slices.Equal(pv.replicas, b.replicas) {
					return fmt.Errorf("partition %d replicas %v, were %v", p, pv.replicas, b.replicas)
				}
				if pv.epoch < b.epoch {
					return fmt.Errorf("partition %d leader epoch %d, was %d", p, pv.epoch, b.epoch)
				}
				if pv.leader < 0 {
					return fmt.Errorf("partition %d has no leader yet", p)
				}
			}
			return nil
		})
	}
}

func without(ids []int32, id int32) []int32 {
	return slices.DeleteFunc(slices.Clone(ids), func(x int32) bool { return x == id })
}

// TestClusterConsumerGroup: in a cluster the group coordinators live on the leaders of the
// __consumer_offsets partitions (created by the controller once three brokers are live), and a
// franz-go consumer group consumes and commits through them.
func TestClusterConsumerGroup(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 3)
	waitCluster(t, OffsetsTopicName+" created", func() error {
		_, _, err := partitionsOf(t, c.Broker(1), OffsetsTopicName)
		return err
	})
	cl := c.Broker(1).ClientT(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := 0; i < 30; i++ {
		produceSync(t, cl, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	group := topicName(t, "group")
	consumer := c.Broker(2).ClientT(t, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	got := 0
	ctx := ctxTimeout(t, opTimeout)
	for got < 30 {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 30 records before the deadline", got)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Logf("fetch %s-%d: %v", tp, p, err) })
		got += fs.NumRecords()
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	adm, err := c.Broker(3).Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	offs.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != 30 {
		t.Fatalf("committed offsets add up to %d, want 30: %v", total, offs)
	}
}

// OffsetsTopicName is the internal topic of committed offsets.
const OffsetsTopicName = "__consumer_offsets"

// TestClusterStatusAndAddNode: `ringtail cluster status` shows the brokers and the controller;
// a fourth broker added with `ringtail cluster add-node --non-voting` and started with --join
// becomes a live broker that serves the cluster's metadata; `remove-node` takes it out of the
// metadata cluster again.
func TestClusterStatusAndAddNode(t *testing.T) {
	c := startCluster3(t)
	out, err := exec.Command(brokerBin, "cluster", "status", "--brokers", c.Broker(1).Addr()).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster status: %v\n%s", err, out)
	}
	for _, want := range []string{"voters [1 2 3]", "controller", "live"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cluster status says nothing of %q:\n%s", want, out)
		}
	}

	addrs, err := cluster.FreeAddrs("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := addrs[1]
	out, err = exec.Command(brokerBin, "cluster", "add-node", "--brokers", c.Broker(2).Addr(),
		"--id", "4", "--raft-addr", raftAddr, "--non-voting").CombinedOutput()
	if err != nil {
		t.Fatalf("cluster add-node: %v\n%s", err, out)
	}
	fourth := cluster.StartBrokerT(t, cluster.BrokerConfig{ID: 4, Addr: addrs[0], Args: []string{
		"--node-id", "4", "--raft-addr", raftAddr, "--peers", cluster.Peers(c.Brokers(), "raft"),
		"--join", "--non-voting"}})
	waitBrokers(t, c, c.Broker(1), []int32{1, 2, 3, 4})
	topic := topicName(t, "")
	createRF3(t, c, topic, 2)
	waitCluster(t, "the fourth broker serving the new topic's metadata", func() error {
		_, _, err := partitionsOf(t, fourth, topic)
		return err
	})
	if err := fourth.Stop(); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(brokerBin, "cluster", "remove-node", "--brokers", c.Broker(3).Addr(), "--id", "4").CombinedOutput()
	if err != nil {
		t.Fatalf("cluster remove-node: %v\n%s", err, out)
	}
	out, _ = exec.Command(brokerBin, "cluster", "status", "--brokers", c.Broker(1).Addr()).CombinedOutput()
	if !strings.Contains(string(out), "non-voting []") {
		t.Errorf("node 4 still a member after remove-node:\n%s", out)
	}
}

// TestClusterAddVoter: a fourth broker added as a voter (`cluster add-node` without
// --non-voting, then `serve --join`) becomes a fourth voter of the metadata log, copies its
// partitions, and `cluster remove-node` takes it out again once it is stopped.
func TestClusterAddVoter(t *testing.T) {
	c := startCluster3(t)
	addrs, err := cluster.FreeAddrs("127.0.0.1", 3)
	if err != nil {
		t.Fatal(err)
	}
	raftAddr, replAddr := addrs[1], addrs[2]
	out, err := exec.Command(brokerBin, "cluster", "add-node", "--brokers", c.Broker(1).Addr(),
		"--id", "4", "--raft-addr", raftAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster add-node: %v\n%s", err, out)
	}
	fourth := cluster.StartBrokerT(t, cluster.BrokerConfig{ID: 4, Addr: addrs[0], Args: []string{
		"--node-id", "4", "--raft-addr", raftAddr, "--replication-listen", replAddr,
		"--peers", cluster.Peers(c.Brokers(), "raft"), "--join"}})
	waitBrokers(t, c, c.Broker(1), []int32{1, 2, 3, 4})
	waitCluster(t, "four voters", func() error {
		out, err := exec.Command(brokerBin, "cluster", "status", "--brokers", c.Broker(2).Addr()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), "voters [1 2 3 4]") {
			return fmt.Errorf("status:\n%s", out)
		}
		return nil
	})

	// Four partitions of three replicas over four brokers: the new broker holds some, copies
	// them from their leaders, and joins their ISRs.
	topic := topicName(t, "")
	adm, err := c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), 4, 3, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
	cl, err := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produceAcked(t, cl, topic, "v", 100)
	waitCluster(t, "every replica of "+topic+" in its ISR", func() error {
		ps, _, err := partitionsOf(t, fourth, topic)
		if err != nil {
			return err
		}
		held := 0
		for p, pv := range ps {
			if len(pv.isr) != len(pv.replicas) {
				return fmt.Errorf("partition %d: replicas %v, ISR %v", p, pv.replicas, pv.isr)
			}
			if slices.Contains(pv.replicas, 4) {
				held++
			}
		}
		if held == 0 {
			return fmt.Errorf("broker 4 holds no replica of %s", topic)
		}
		return nil
	})

	if err := fourth.Stop(); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(brokerBin, "cluster", "remove-node", "--brokers", c.Broker(3).Addr(), "--id", "4").CombinedOutput()
	if err != nil {
		t.Fatalf("cluster remove-node: %v\n%s", err, out)
	}
	out, _ = exec.Command(brokerBin, "cluster", "status", "--brokers", c.Broker(1).Addr()).CombinedOutput()
	if !strings.Contains(string(out), "voters [1 2 3]") {
		t.Errorf("node 4 still a voter after remove-node:\n%s", out)
	}
}

// TestClusterConnectionLimitSparesBrokers: --max-connections bounds clients, not brokers. With
// every broker's client places taken, a broker killed with kill -9 and started again still
// reaches the controller (heartbeats, on the same listener) and is unfenced.
func TestClusterConnectionLimitSparesBrokers(t *testing.T) {
	const limit = 2
	c := startCluster3With(t, cluster3Opts{args: []string{"--max-connections", strconv.Itoa(limit)}})
	// Take every client place on every broker (the harness's own connections may still be
	// counted out: retry until each place is ours).
	held := map[int][]*rawConn{}
	for _, b := range c.Brokers() {
		for len(held[b.ID()]) < limit {
			waitCluster(t, fmt.Sprintf("a client place on broker %d", b.ID()), func() error {
				rc, err := dialRawErr(b.Addr())
				if err != nil {
					return err
				}
				req := kmsg.NewPtrApiVersionsRequest()
				req.Version = 3
				req.ClientSoftwareName, req.ClientSoftwareVersion = "e2e", "1"
				if _, err := rc.roundTrip(req, 10*time.Second); err != nil {
					rc.Close()
					return err
				}
				t.Cleanup(func() { rc.Close() })
				held[b.ID()] = append(held[b.ID()], rc)
				return nil
			})
		}
	}
	md, err := metadataRawTopics(held[1][0], nil)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := int(md.ControllerID)
	victim := c.Broker(ctrl%3 + 1)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := victim.Start(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	// Asked on a held connection: the controller has no client place left for the question.
	waitCluster(t, fmt.Sprintf("broker %d unfenced again by controller %d", victim.ID(), ctrl), func() error {
		md, err := metadataRawTopics(held[ctrl][0], nil)
		if err != nil {
			return err
		}
		if len(md.Brokers) != 3 {
			return fmt.Errorf("%d live brokers", len(md.Brokers))
		}
		return nil
	})
}
