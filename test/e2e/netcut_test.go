package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// TestClusterNetworkCut: the controller is cut off from the two other brokers, its Raft and
// its Kafka traffic, both ways. The majority carries on: it elects another controller, takes
// metadata changes, and fences the cut broker after its session, moving its leaderships. The
// cut broker, a minority of one, refuses metadata changes with NOT_CONTROLLER. Once the cut
// heals it rejoins, unfenced, with the majority's metadata.
//
// The brokers run in network namespaces of test/cluster's Network and the cut is two routing
// rules per peer in the cut broker's namespace (netns.go says why that, and not iptables on
// loopback: there a broker's outgoing connections leave from 127.0.0.1 and a cut by address
// would be one-sided). The test process keeps reaching every broker, so it sees the minority
// refuse. Root only; skipped with a message otherwise.
func TestClusterNetworkCut(t *testing.T) {
	nw := cluster.NewNetworkT(t, 3)
	c := startCluster3On(t, nw)
	topic := topicName(t, "before")
	createRF3(t, c, topic, 6)
	before, ctrl, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the controller: the majority must elect another as well as fence it.
	cut := c.Broker(int(ctrl))
	majority := []*cluster.Broker{c.Broker(int(ctrl)%3 + 1), c.Broker((int(ctrl)+1)%3 + 1)}
	m := majority[0]
	if err := nw.Isolate(cut.ID()); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	t.Logf("broker %d, the controller, cut off from brokers %d and %d", cut.ID(), majority[0].ID(), majority[1].ID())

	waitCluster(t, "a controller in the majority", func() error {
		for _, b := range majority {
			_, now, err := partitionsOf(t, b, topic)
			if err != nil {
				return err
			}
			if now == ctrl || now < 1 {
				return fmt.Errorf("broker %d names controller %d", b.ID(), now)
			}
		}
		return nil
	})
	t.Logf("a new controller in the majority %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	waitBrokers(t, c, m, without([]int32{1, 2, 3}, ctrl))
	waitCluster(t, "leaderships off the cut broker", func() error {
		now, _, err := partitionsOf(t, m, topic)
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
	t.Logf("the cut broker fenced and its leaderships moved %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	now, _, err := partitionsOf(t, m, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, pv := range now {
		if before[p].leader == ctrl && pv.epoch <= before[p].epoch {
			t.Errorf("partition %d moved from broker %d without a new leader epoch (%d, was %d)", p, ctrl, pv.epoch, before[p].epoch)
		}
		if slices.Contains(pv.isr, ctrl) {
			t.Errorf("partition %d keeps the cut broker %d in its ISR %v", p, ctrl, pv.isr)
		}
	}

	// Metadata changes go on through a broker of the majority: a topic over the two live
	// brokers.
	during := topicName(t, "during")
	resp, err := m.AdminT(t).CreateTopic(ctxTimeout(t, opTimeout), 4, 2, nil, during)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s through broker %d of the majority: %v %s", during, m.ID(), err, resp.ErrMessage)
	}
	if resp.ReplicationFactor != 2 {
		t.Errorf("CreateTopics answered replication factor %d, want 2", resp.ReplicationFactor)
	}
	created, _, err := partitionsOf(t, m, during)
	if err != nil {
		t.Fatal(err)
	}
	for p, pv := range created {
		if len(pv.replicas) != 2 || slices.Contains(pv.replicas, ctrl) {
			t.Errorf("partition %d of %s placed on %v: want two replicas, not the cut broker %d", p, during, pv.replicas, ctrl)
		}
	}

	// The minority refuses. Once its Raft has given up on a leader (an election timeout after
	// the cut: CheckQuorum for a leader, PreVote keeps it from electing itself) the cut broker
	// names no controller, and a CreateTopics sent to it is refused at once with
	// NOT_CONTROLLER: a client retries that where its metadata names the controller.
	waitCluster(t, "the cut broker to know no controller", func() error {
		md, err := metadataOf(t, cut)
		if err != nil {
			return err
		}
		if md.Controller != -1 {
			return fmt.Errorf("it names controller %d", md.Controller)
		}
		return nil
	})
	refused := topicName(t, "refused")
	code, msg := createTopicRaw(t, cut, refused)
	if code != kerr.NotController.Code {
		t.Fatalf("CreateTopics on the cut broker: %v (%s), want NOT_CONTROLLER", kerr.ErrorForCode(code), msg)
	}
	t.Logf("the cut broker refuses CreateTopics: %v: %s", kerr.ErrorForCode(code), msg)

	// Healed, the cut broker rejoins: unfenced, following the majority's metadata.
	if err := nw.HealAll(); err != nil {
		t.Fatal(err)
	}
	healedAt := time.Now()
	waitBrokers(t, c, m, []int32{1, 2, 3})
	t.Logf("the cut broker unfenced %v after the cut healed", time.Since(healedAt).Round(time.Millisecond))
	waitCluster(t, "the same metadata from every broker", func() error {
		var want string
		for _, b := range c.Brokers() {
			md, err := metadataOf(t, b)
			if err != nil {
				return err
			}
			ids := md.Brokers.NodeIDs()
			slices.Sort(ids)
			got := fmt.Sprintf("brokers %v, controller %d", ids, md.Controller)
			for _, tp := range []string{topic, during} {
				pv, _, err := partitionsOf(t, b, tp)
				if err != nil {
					return fmt.Errorf("broker %d: %w", b.ID(), err)
				}
				got += fmt.Sprintf("; %s %v", tp, pv)
			}
			if _, ok := md.Topics[refused]; ok {
				return fmt.Errorf("broker %d lists topic %s, which the cut broker refused", b.ID(), refused)
			}
			if want == "" {
				want = got
			} else if got != want {
				return fmt.Errorf("broker %d says %s; broker 1 %s", b.ID(), got, want)
			}
		}
		return nil
	})
}

// createTopicRaw sends a CreateTopics for one topic (one partition, the default replication
// factor) to broker b itself, not to the controller a client would pick, and returns the
// topic's error code and message.
func createTopicRaw(t *testing.T, b *cluster.Broker, topic string) (int16, string) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 5
	req.TimeoutMillis = 15000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, -1
	req.Topics = append(req.Topics, rt)
	resp, err := dialRaw(t, b.Addr()).roundTrip(req, 30*time.Second)
	if err != nil {
		t.Fatalf("CreateTopics to broker %d: %v", b.ID(), err)
	}
	topics := resp.(*kmsg.CreateTopicsResponse).Topics
	if len(topics) != 1 {
		t.Fatalf("CreateTopics to broker %d: %d topics in the response", b.ID(), len(topics))
	}
	msg := ""
	if topics[0].ErrorMessage != nil {
		msg = *topics[0].ErrorMessage
	}
	return topics[0].ErrorCode, msg
}
