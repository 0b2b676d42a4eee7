package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/group"
)

// TestGroupsAcrossOffsetsPartitions: with __consumer_offsets in eight partitions (set through
// RINGTAIL_OFFSETS_TOPIC_PARTITIONS), franz-go consumer groups whose ids hash to different
// partitions each consume a topic and commit; each group's records land in its own partition
// of __consumer_offsets (Kafka's partition for the id) and nowhere else; FindCoordinator,
// ListGroups, DescribeGroups and `ringtail group list/describe` see every group; and after a
// kill -9 every group's commits are back.
func TestGroupsAcrossOffsetsPartitions(t *testing.T) {
	const offsetsPartitions = 8
	b := startBroker(t, withEnv(fmt.Sprintf("RINGTAIL_OFFSETS_TOPIC_PARTITIONS=%d", offsetsPartitions)))
	adm := b.Admin(t)
	cl := b.Client(t)
	if mt := waitTopicReady(t, cl, "__consumer_offsets"); len(mt.Partitions) != offsetsPartitions {
		t.Fatalf("__consumer_offsets has %d partitions, want %d", len(mt.Partitions), offsetsPartitions)
	}

	// Four groups in four different offsets partitions.
	var groups []string
	byPartition := make(map[int32]string)
	for i := 0; len(groups) < 4; i++ {
		name := fmt.Sprintf("spread-%d", i)
		p := group.PartitionFor(name, offsetsPartitions)
		if _, taken := byPartition[p]; !taken {
			byPartition[p] = name
			groups = append(groups, name)
		}
	}

	topic := topicName(t, "spread")
	createTopic(t, adm, topic, 4, nil)
	const records = 400
	produceNumbered(t, b.Client(t, kgo.DefaultProduceTopic(topic)), topic, 0, records)
	ends := endOffsets(t, adm, topic)

	var members []*groupMember
	for _, g := range groups {
		members = append(members, startMember(t, b, "member-"+g, g, topic, kgo.CooperativeStickyBalancer()))
	}
	for i, m := range members {
		waitFor(t, 60*time.Second, groups[i]+" to process every record", func() bool {
			p, _ := m.snapshot()
			return len(p) >= records
		})
	}
	for _, g := range groups {
		waitFor(t, 30*time.Second, g+" to commit every partition's end", func() bool {
			lags, err := adm.Lag(ctxTimeout(t, opTimeout), g)
			if err != nil {
				return false
			}
			l := lags[g]
			return l.Error() == nil && l.Lag.Total() == 0 && len(l.Members) == 1
		})
	}

	// FindCoordinator, batched: this broker for each group.
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.Version, req.CoordinatorKeys = 4, groups
	rc := dialRaw(t, b.Addr())
	fc := rc.mustRoundTrip(t, req).(*kmsg.FindCoordinatorResponse)
	host, portStr, _ := net.SplitHostPort(b.Addr())
	port, _ := strconv.Atoi(portStr)
	for i, c := range fc.Coordinators {
		if c.Key != groups[i] || c.ErrorCode != 0 || c.NodeID != 1 || c.Host != host || c.Port != int32(port) {
			t.Fatalf("FindCoordinator %q: %+v, want node 1 at %s", groups[i], c, b.Addr())
		}
	}

	described, err := adm.DescribeGroups(ctxTimeout(t, opTimeout), groups...)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if d := described[g]; d.Err != nil || d.State != "Stable" || len(d.Members) != 1 {
			t.Fatalf("DescribeGroups %s: state %q, %d members, err %v", g, d.State, len(d.Members), d.Err)
		}
	}
	listed, err := adm.ListGroups(ctxTimeout(t, opTimeout))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if _, ok := listed[g]; !ok {
			t.Fatalf("ListGroups lacks %s: %v", g, listed.Groups())
		}
	}
	out, err := exec.Command(brokerBin, "group", "list", "--brokers", b.Addr()).CombinedOutput()
	if err != nil {
		t.Fatalf("ringtail group list: %v\n%s", err, out)
	}
	for _, g := range groups {
		if !strings.Contains(string(out), g) {
			t.Fatalf("ringtail group list does not show %s:\n%s", g, out)
		}
	}
	out, err = exec.Command(brokerBin, append([]string{"group", "describe", "--brokers", b.Addr()}, groups...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ringtail group describe: %v\n%s", err, out)
	}
	for _, g := range groups {
		if !strings.Contains(string(out), "group "+g+": state Stable") {
			t.Fatalf("ringtail group describe does not show %s as Stable:\n%s", g, out)
		}
	}

	for _, m := range members {
		m.stop()
	}

	// Each group wrote only to its own offsets partition.
	offsetsEnds := endOffsets(t, adm, "__consumer_offsets")
	for p := int32(0); p < offsetsPartitions; p++ {
		_, used := byPartition[p]
		if used != (offsetsEnds[p] > 0) {
			t.Fatalf("__consumer_offsets partition %d holds %d records; groups by partition %v", p, offsetsEnds[p], byPartition)
		}
	}

	b.Kill()
	b.Restart()
	adm = b.Admin(t)
	for _, g := range groups {
		fetched, err := adm.FetchOffsets(ctxTimeout(t, opTimeout), g)
		if err != nil || fetched.Error() != nil {
			t.Fatalf("%s after kill -9: %v %v", g, err, fetched.Error())
		}
		for p, end := range ends {
			if o, ok := fetched.Lookup(topic, p); !ok || o.At != end {
				t.Fatalf("%s partition %d after kill -9: committed %+v, want %d", g, p, o, end)
			}
		}
	}
	described, err = adm.DescribeGroups(ctxTimeout(t, opTimeout), groups...)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if d := described[g]; d.Err != nil || d.State != "Empty" {
			t.Fatalf("%s after kill -9: state %q, err %v; want Empty", g, d.State, d.Err)
		}
	}
}
