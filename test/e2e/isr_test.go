package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// registeredRE is a broker's log line for its registration.
var registeredRE = regexp.MustCompile(`msg="cluster: registered" node_id=(\d+) broker_epoch=(\d+)`)

// brokerEpochs reads each broker's broker epoch from its log (its last registration).
func brokerEpochs(t *testing.T, c *cluster.Cluster) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	for _, b := range c.Brokers() {
		m := registeredRE.FindAllStringSubmatch(b.Log(), -1)
		if len(m) == 0 {
			t.Fatalf("broker %d logged no registration", b.ID())
		}
		epoch, _ := strconv.ParseInt(m[len(m)-1][2], 10, 64)
		out[int32(b.ID())] = epoch
	}
	return out
}

// isrMember is one broker of a requested ISR and the broker epoch the request names for it.
type isrMember struct {
	id    int32
	epoch int64
}

// alterPartitionV3 sends one AlterPartition v3 for partition 0 of topic id on rc, as broker
// from at broker epoch brokerEpoch.
func alterPartitionV3(t *testing.T, rc *rawConn, id [16]byte, from int32, brokerEpoch int64, leaderEpoch, partitionEpoch int32, isr ...isrMember) *kmsg.AlterPartitionResponse {
	t.Helper()
	req := kmsg.NewPtrAlterPartitionRequest()
	req.Version = 3
	req.BrokerID, req.BrokerEpoch = from, brokerEpoch
	rt := kmsg.NewAlterPartitionRequestTopic()
	rt.TopicID = id
	rp := kmsg.NewAlterPartitionRequestTopicPartition()
	rp.Partition, rp.LeaderEpoch, rp.PartitionEpoch = 0, leaderEpoch, partitionEpoch
	for _, m := range isr {
		e := kmsg.NewAlterPartitionRequestTopicPartitionNewEpochISR()
		e.BrokerID, e.BrokerEpoch = m.id, m.epoch
		rp.NewEpochISR = append(rp.NewEpochISR, e)
	}
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := rc.roundTrip(req, 15*time.Second)
	if err != nil {
		t.Fatalf("AlterPartition: %v", err)
	}
	return resp.(*kmsg.AlterPartitionResponse)
}

// partitionAnswer is the one partition's answer of resp, as "CODE" or
// "leader=L leader-epoch=E partition-epoch=P isr=[...]".
func partitionAnswer(resp *kmsg.AlterPartitionResponse) string {
	if resp.ErrorCode != 0 {
		return "request: " + kerr.ErrorForCode(resp.ErrorCode).Error()
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return fmt.Sprintf("malformed answer %+v", resp)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		return kerr.ErrorForCode(p.ErrorCode).Error()
	}
	return fmt.Sprintf("leader=%d leader-epoch=%d partition-epoch=%d isr=%v", p.LeaderID, p.LeaderEpoch, p.PartitionEpoch, p.ISR)
}

// metadataV12 asks b for topic's metadata (v12: with its topic id).
func metadataV12(t *testing.T, b *cluster.Broker, topic string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	rc, err := dialRawErr(b.Addr())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	resp, err := rc.roundTrip(req, 10*time.Second)
	if err != nil {
		return nil, err
	}
	md := resp.(*kmsg.MetadataResponse)
	if len(md.Topics) != 1 || md.Topics[0].ErrorCode != 0 || len(md.Topics[0].Partitions) != 1 {
		return nil, fmt.Errorf("topic %s missing or in error: %+v", topic, md.Topics)
	}
	return md, nil
}

// waitISR waits until every broker's metadata gives partition 0 of topic the ISR isr (in
// any order) with leader at leaderEpoch.
func waitISR(t *testing.T, c *cluster.Cluster, topic string, leader, leaderEpoch int32, isr []int32) {
	t.Helper()
	want := slices.Sorted(slices.Values(isr))
	waitCluster(t, fmt.Sprintf("every broker showing ISR %v", want), func() error {
		for _, b := range c.Brokers() {
			md, err := metadataV12(t, b, topic)
			if err != nil {
				return err
			}
			p := md.Topics[0].Partitions[0]
			got := slices.Sorted(slices.Values(p.ISR))
			if p.Leader != leader || p.LeaderEpoch != leaderEpoch || !slices.Equal(got, want) {
				return fmt.Errorf("broker %d: leader %d at epoch %d, ISR %v", b.ID(), p.Leader, p.LeaderEpoch, p.ISR)
			}
		}
		return nil
	})
}

// TestClusterAlterPartition: AlterPartition, raw, to the controller of three brokers: a
// partition leader shrinks and expands its ISR (compare-and-set on the partition epoch, the
// leader epoch unchanged), every broker's metadata follows, and the controller refuses, with
// Kafka's codes and a log line each, a request to a broker that is not the controller, from a
// broker that does not lead the partition, at an old leader or partition epoch, at an old
// broker epoch, for an unknown topic id, and one that takes in a broker at a broker epoch that
// is not its own.
func TestClusterAlterPartition(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 1)
	var md *kmsg.MetadataResponse
	waitCluster(t, "the new topic in sync on every broker", func() error {
		for _, b := range c.Brokers() {
			m, err := metadataV12(t, b, topic)
			if err != nil {
				return err
			}
			if p := m.Topics[0].Partitions[0]; p.Leader < 1 || len(p.ISR) != 3 {
				return fmt.Errorf("broker %d: leader %d, ISR %v", b.ID(), p.Leader, p.ISR)
			}
			md = m
		}
		return nil
	})
	p := md.Topics[0].Partitions[0]
	leader, leaderEpoch, id, ctrl := p.Leader, p.LeaderEpoch, md.Topics[0].TopicID, md.ControllerID
	epochs := brokerEpochs(t, c)
	var followers []int32
	for _, r := range p.Replicas {
		if r != leader {
			followers = append(followers, r)
		}
	}
	member := func(b int32) isrMember { return isrMember{b, epochs[b]} }
	all := []isrMember{member(leader), member(followers[0]), member(followers[1])}
	t.Logf("leader %d at leader epoch %d, followers %v, controller %d, broker epochs %v", leader, leaderEpoch, followers, ctrl, epochs)

	var other *cluster.Broker
	for _, b := range c.Brokers() {
		if int32(b.ID()) != ctrl {
			other = b
			break
		}
	}
	if got := partitionAnswer(alterPartitionV3(t, dialRaw(t, other.Addr()), id, leader, epochs[leader], leaderEpoch, 0, all...)); got != "request: "+kerr.NotController.Error() {
		t.Errorf("AlterPartition to broker %d, not the controller: %s", other.ID(), got)
	}

	rc := dialRaw(t, c.Broker(int(ctrl)).Addr())
	expect := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %s, want %s", what, got, want)
		}
	}
	state := func(partitionEpoch int32, isr ...int32) string {
		return fmt.Sprintf("leader=%d leader-epoch=%d partition-epoch=%d isr=%v", leader, leaderEpoch, partitionEpoch, isr)
	}
	// The ISR it has, at partition epoch 0 (a new topic's): nothing changes.
	expect("the current ISR", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch, 0, all...)),
		state(0, p.ISR...))

	log := c.Broker(int(ctrl)).LogLen()
	fenced := kerr.FencedLeaderEpoch.Error()
	expect("from a follower", partitionAnswer(alterPartitionV3(t, rc, id, followers[0], epochs[followers[0]], leaderEpoch, 0, member(followers[0]))), fenced)
	expect("at an old leader epoch", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch-1, 0, member(leader))), fenced)
	expect("at an old partition epoch", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch, -1, member(leader))),
		kerr.InvalidUpdateVersion.Error())
	expect("at an old broker epoch", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader]-1, leaderEpoch, 0, member(leader))),
		"request: "+kerr.StaleBrokerEpoch.Error())
	expect("for an unknown topic id", partitionAnswer(alterPartitionV3(t, rc, [16]byte{0xff, 1}, leader, epochs[leader], leaderEpoch, 0, member(leader))),
		kerr.UnknownTopicID.Error())
	expect("without the leader", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch, 0, member(followers[0]))),
		kerr.InvalidRequest.Error())
	// The log reaches the test through a pipe: wait for the lines.
	waitCluster(t, "the controller logging 6 refusals", func() error {
		if n := strings.Count(c.Broker(int(ctrl)).Log()[log:], "cluster: AlterPartition refused"); n != 6 {
			return fmt.Errorf("%d logged", n)
		}
		return nil
	})
	waitISR(t, c, topic, leader, leaderEpoch, p.ISR) // nothing changed

	// The leader leaves followers[1] out: the partition epoch moves, the leader epoch does not.
	shrunk := []int32{leader, followers[0]}
	expect("a shrink", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch, 0, member(leader), member(followers[0]))),
		state(1, shrunk...))
	waitISR(t, c, topic, leader, leaderEpoch, shrunk)
	// The same request again (a retry whose first answer was lost) is answered as done.
	expect("the shrink again", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch, 0, member(leader), member(followers[0]))),
		state(1, shrunk...))

	// followers[1] joins again, at its own broker epoch only.
	expect("a join at another broker epoch", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch, 1,
		member(leader), member(followers[0]), isrMember{followers[1], epochs[followers[1]] + 1})), kerr.IneligibleReplica.Error())
	expect("a join", partitionAnswer(alterPartitionV3(t, rc, id, leader, epochs[leader], leaderEpoch, 1, all...)),
		state(2, leader, followers[0], followers[1]))
	waitISR(t, c, topic, leader, leaderEpoch, []int32{leader, followers[0], followers[1]})
}
