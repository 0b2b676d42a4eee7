package broker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/meta"
)

// These tests drive the group host of a real node (engine, WAL, purgatory) directly, without
// sockets: requests go in through HandleGroup, and every answer is checked to come exactly once.

const hostTestTopic = "commits"

func openGroupsNode(t *testing.T, offsetsPartitions int32, dir string) *Broker {
	t.Helper()
	b, err := Open(Config{
		NodeID: 1, AdvertisedHost: "127.0.0.1", AdvertisedPort: 9092,
		DataDir: dir, DefaultPartitions: 1, Durability: "none", WALIO: "portable",
		OffsetsTopicPartitions: offsetsPartitions,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call sends req and returns where its one answer arrives; a second answer fails the test.
func call(t *testing.T, b *Broker, req kmsg.Request) <-chan kmsg.Response {
	t.Helper()
	ch := make(chan kmsg.Response, 1)
	var once sync.Once
	b.HandleGroup("test-client", "/127.0.0.1", slog.New(slog.NewTextHandler(io.Discard, nil)), req, func(r kmsg.Response) {
		answered := false
		once.Do(func() { answered = true; ch <- r })
		if !answered {
			t.Errorf("%s answered twice", kmsg.NameForKey(req.Key()))
		}
	})
	return ch
}

// await waits for an answer; a test that hangs here has lost a request.
func await[R kmsg.Response](t *testing.T, ch <-chan kmsg.Response) R {
	t.Helper()
	select {
	case r := <-ch:
		out, ok := r.(R)
		if !ok {
			t.Fatalf("answer %T", r)
		}
		return out
	case <-time.After(time.Minute):
		t.Fatal("no answer within a minute")
	}
	panic("unreachable")
}

// groupsIn returns n group names whose offsets partition is p.
func groupsIn(p, partitions int32, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if name := fmt.Sprintf("group-%d", i); group.PartitionFor(name, partitions) == p {
			out = append(out, name)
		}
	}
	return out
}

func commitReq(g string, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 8, g, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = hostTestTopic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = 0, offset, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func commit(t *testing.T, b *Broker, g string, offset int64) {
	t.Helper()
	resp := await[*kmsg.OffsetCommitResponse](t, call(t, b, commitReq(g, offset)))
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit %s: %v", g, kerr.ErrorForCode(code))
	}
}

// fetchOffset returns group g's committed offset of the test topic's partition 0 (OffsetFetch
// v7, one group), or the request's error code.
func fetchOffset(t *testing.T, b *Broker, g string) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version, req.Group = 7, g
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = hostTestTopic, []int32{0}
	req.Topics = append(req.Topics, rt)
	resp := await[*kmsg.OffsetFetchResponse](t, call(t, b, req))
	if resp.ErrorCode != 0 {
		return -1, resp.ErrorCode
	}
	return resp.Topics[0].Partitions[0].Offset, 0
}

func listGroups(t *testing.T, b *Broker) (names map[string]bool, code int16) {
	t.Helper()
	req := kmsg.NewPtrListGroupsRequest()
	req.Version = 4
	resp := await[*kmsg.ListGroupsResponse](t, call(t, b, req))
	names = make(map[string]bool)
	for i, g := range resp.Groups {
		if i > 0 && resp.Groups[i-1].Group >= g.Group {
			t.Fatalf("ListGroups not sorted: %q before %q", resp.Groups[i-1].Group, g.Group)
		}
		names[g.Group] = true
	}
	return names, resp.ErrorCode
}

// describeCodes returns each group's error code and state from one DescribeGroups.
func describeCodes(t *testing.T, b *Broker, groups ...string) (codes []int16, states []string) {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Version, req.Groups = 5, groups
	resp := await[*kmsg.DescribeGroupsResponse](t, call(t, b, req))
	if len(resp.Groups) != len(groups) {
		t.Fatalf("DescribeGroups of %d groups answered %d", len(groups), len(resp.Groups))
	}
	for i, g := range resp.Groups {
		if g.Group != groups[i] {
			t.Fatalf("DescribeGroups entry %d is %q, want %q", i, g.Group, groups[i])
		}
		codes, states = append(codes, g.ErrorCode), append(states, g.State)
	}
	return codes, states
}

func setupGroupsNode(t *testing.T, partitions int32) *Broker {
	t.Helper()
	b := openGroupsNode(t, partitions, t.TempDir())
	t.Cleanup(func() { b.Close() })
	if _, err := b.CreateTopic(CreateTopicRequest{Name: hostTestTopic, Partitions: 1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGroupHostAnswersAcrossPartitions: groups of every offsets partition are served by their
// own coordinator; requests naming several groups are split and put back in request order.
func TestGroupHostAnswersAcrossPartitions(t *testing.T) {
	const partitions = 4
	b := setupGroupsNode(t, partitions)
	var all []string
	for p := int32(0); p < partitions; p++ {
		gs := groupsIn(p, partitions, 2)
		all = append(all, gs...)
		for i, g := range gs {
			commit(t, b, g, int64(10*p)+int64(i))
		}
	}
	for i, g := range all {
		if off, code := fetchOffset(t, b, g); code != 0 || off != int64(10*(i/2)+i%2) {
			t.Fatalf("%s: offset %d, code %v", g, off, kerr.ErrorForCode(code))
		}
	}
	names, code := listGroups(t, b)
	if code != 0 || len(names) != len(all) {
		t.Fatalf("ListGroups: %v (%v), want %v", names, kerr.ErrorForCode(code), all)
	}

	// OffsetFetch v8 names groups of every partition, and one nobody committed for.
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	asked := append([]string{"never-committed"}, all...)
	for _, g := range asked {
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = g
		req.Groups = append(req.Groups, rg)
	}
	resp := await[*kmsg.OffsetFetchResponse](t, call(t, b, req))
	for i, rg := range resp.Groups {
		if rg.Group != asked[i] || rg.ErrorCode != 0 {
			t.Fatalf("OffsetFetch v8 entry %d: %q %v, want %q", i, rg.Group, kerr.ErrorForCode(rg.ErrorCode), asked[i])
		}
		if i == 0 {
			if len(rg.Topics) != 0 {
				t.Fatalf("a group without commits has offsets: %+v", rg.Topics)
			}
			continue
		}
		if got, want := rg.Topics[0].Partitions[0].Offset, int64(10*((i-1)/2)+(i-1)%2); got != want {
			t.Fatalf("OffsetFetch v8 %s: %d, want %d", rg.Group, got, want)
		}
	}

	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version, del.Groups = 2, []string{all[0], "no-such-group", all[len(all)-1]}
	dresp := await[*kmsg.DeleteGroupsResponse](t, call(t, b, del))
	for i, want := range []int16{0, kerr.GroupIDNotFound.Code, 0} {
		if dg := dresp.Groups[i]; dg.Group != del.Groups[i] || dg.ErrorCode != want {
			t.Fatalf("DeleteGroups entry %d: %q %v, want %q %v", i, dg.Group, kerr.ErrorForCode(dg.ErrorCode), del.Groups[i], kerr.ErrorForCode(want))
		}
	}
	names, _ = listGroups(t, b)
	if names[all[0]] || names[all[len(all)-1]] || len(names) != len(all)-2 {
		t.Fatalf("after DeleteGroups: %v", names)
	}
}

// TestGroupHostLoadUnload moves one offsets partition out and back while requests wait in its
// coordinator and while it loads: parked requests answer NOT_COORDINATOR at Unload, requests
// during a replay COORDINATOR_LOAD_IN_PROGRESS, the other partitions' groups are served
// throughout, and the reloaded coordinator has the partition's state back.
func TestGroupHostLoadUnload(t *testing.T) {
	const partitions = 4
	b := setupGroupsNode(t, partitions)
	h := b.groups.Load()
	moving := groupsIn(1, partitions, 2) // both in partition 1
	gA, gA2 := moving[0], moving[1]
	gB := groupsIn(2, partitions, 1)[0]
	commit(t, b, gA, 5)
	commit(t, b, gB, 7)

	// A long initial rebalance delay keeps a JoinGroup parked until something else answers it.
	h.Unload(1)
	h.coordConfig.InitialRebalanceDelay = time.Hour
	if err := h.Load(1)(); err != nil {
		t.Fatal(err)
	}
	if off, code := fetchOffset(t, b, gA); code != 0 || off != 5 {
		t.Fatalf("%s after a reload: offset %d, %v", gA, off, kerr.ErrorForCode(code))
	}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.ProtocolType = 3, gA2, "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 30_000, 3_600_000
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 1}}}
	joined := call(t, b, join)
	// The shard handles its queue in order: once a later request is answered, the join has
	// been handled, and it waits in the coordinator.
	if _, states := describeCodes(t, b, gA2); states[0] != "PreparingRebalance" {
		t.Fatalf("%s is %s, want PreparingRebalance with the join parked", gA2, states[0])
	}
	select {
	case r := <-joined:
		t.Fatalf("the join was answered before the rebalance: %+v", r)
	default:
	}

	h.Unload(1)
	if resp := await[*kmsg.JoinGroupResponse](t, joined); resp.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("parked join after Unload: %v, want NOT_COORDINATOR", kerr.ErrorForCode(resp.ErrorCode))
	}
	if _, code := fetchOffset(t, b, gA); code != kerr.NotCoordinator.Code {
		t.Fatalf("OffsetFetch of an unloaded group: %v, want NOT_COORDINATOR", kerr.ErrorForCode(code))
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version, hb.Group = 3, gA
	if resp := await[*kmsg.HeartbeatResponse](t, call(t, b, hb)); resp.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("Heartbeat of an unloaded group: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if resp := await[*kmsg.OffsetCommitResponse](t, call(t, b, commitReq(gA, 6))); resp.Topics[0].Partitions[0].ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("OffsetCommit of an unloaded group: %v", kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
	}
	if codes, _ := describeCodes(t, b, gA, gB); codes[0] != kerr.NotCoordinator.Code || codes[1] != 0 {
		t.Fatalf("DescribeGroups across a hosted and an unhosted partition: %v", codes)
	}
	if names, code := listGroups(t, b); code != 0 || names[gA] || !names[gB] {
		t.Fatalf("ListGroups without partition 1: %v %v", names, kerr.ErrorForCode(code))
	}
	if off, code := fetchOffset(t, b, gB); code != 0 || off != 7 {
		t.Fatalf("%s while partition 1 is away: %d %v", gB, off, kerr.ErrorForCode(code))
	}

	// Held in its replay: the partition's groups are loading, the others served.
	entered, release := make(chan int32, 1), make(chan struct{})
	h.beforeReplay = func(p int32) { entered <- p; <-release }
	wait := h.Load(1)
	<-entered
	if _, code := fetchOffset(t, b, gA); code != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("OffsetFetch while loading: %v, want COORDINATOR_LOAD_IN_PROGRESS", kerr.ErrorForCode(code))
	}
	if codes, _ := describeCodes(t, b, gB, gA); codes[0] != 0 || codes[1] != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("DescribeGroups while partition 1 loads: %v", codes)
	}
	if names, code := listGroups(t, b); code != kerr.CoordinatorLoadInProgress.Code || !names[gB] {
		t.Fatalf("ListGroups while loading: %v %v, want %s with COORDINATOR_LOAD_IN_PROGRESS", names, kerr.ErrorForCode(code), gB)
	}
	close(release)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if off, code := fetchOffset(t, b, gA); code != 0 || off != 5 {
		t.Fatalf("%s after loading again: %d %v", gA, off, kerr.ErrorForCode(code))
	}
	if names, code := listGroups(t, b); code != 0 || !names[gA] || !names[gB] {
		t.Fatalf("ListGroups after loading again: %v %v", names, kerr.ErrorForCode(code))
	}

	// An Unload in the middle of a replay abandons it.
	h.Unload(1)
	release = make(chan struct{})
	wait = h.Load(1)
	<-entered
	loading := h.shards[1].Load()
	unloaded := make(chan struct{})
	go func() { h.Unload(1); close(unloaded) }()
	<-loading.stop // the Unload has begun; the replay goes on once released
	close(release)
	<-unloaded
	if err := wait(); !errors.Is(err, errUnloaded) {
		t.Fatalf("a replay interrupted by Unload returned %v", err)
	}
	if _, code := fetchOffset(t, b, gA); code != kerr.NotCoordinator.Code {
		t.Fatalf("after an abandoned load: %v, want NOT_COORDINATOR", kerr.ErrorForCode(code))
	}
	h.beforeReplay = nil
	if err := h.Load(1)(); err != nil {
		t.Fatal(err)
	}
	commit(t, b, gA, 8)
	if off, _ := fetchOffset(t, b, gA); off != 8 {
		t.Fatalf("commit after the last load: %d", off)
	}
}

// TestOffsetsTopicKeepsItsPartitionCount: a data directory whose __consumer_offsets was created
// with one partition keeps one whatever the setting says, and its groups' commits are there.
func TestOffsetsTopicKeepsItsPartitionCount(t *testing.T) {
	dir := t.TempDir()
	b := openGroupsNode(t, 1, dir)
	if _, err := b.CreateTopic(CreateTopicRequest{Name: hostTestTopic, Partitions: 1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	groups := []string{"group-1", "group-2", "my-group"} // partitions 49, 0 and 12 of 50
	for i, g := range groups {
		commit(t, b, g, int64(100+i))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openGroupsNode(t, 50, dir)
	defer b.Close()
	if tp, _ := b.Topic(OffsetsTopic); tp.Partitions != 1 || b.groups.Load().partitions != 1 {
		t.Fatalf("__consumer_offsets has %d partitions (host: %d) after a restart asking for 50", tp.Partitions, b.groups.Load().partitions)
	}
	for i, g := range groups {
		if off, code := fetchOffset(t, b, g); code != 0 || off != int64(100+i) {
			t.Fatalf("%s after the restart: %d %v", g, off, kerr.ErrorForCode(code))
		}
	}
}

// TestGroupHostReloadsAfterLeadershipRoundTrip: a coordinator whose partition's leadership
// went to another node and came back between two reconciles must not serve its old state:
// the other node's coordinator committed meanwhile, and that commit is in the log now. The
// reconcile sees the same leader at a newer leader epoch and replays the partition.
func TestGroupHostReloadsAfterLeadershipRoundTrip(t *testing.T) {
	const partitions = 2
	b := setupGroupsNode(t, partitions)
	h := b.groups.Load()
	g := groupsIn(1, partitions, 1)[0]
	commit(t, b, g, 5)
	part := b.engine.Partition(TopicPartition{Topic: OffsetsTopic, Partition: 1})
	epoch := part.LeaderEpoch()

	// Away: another coordinator of the partition (a shard of its own, replaying the same log)
	// takes a commit. Back: this node's old shard is the one hosted again.
	old := h.shards[1].Swap(nil)
	if err := h.Load(1)(); err != nil {
		t.Fatal(err)
	}
	commit(t, b, g, 9)
	other := h.shards[1].Swap(old)
	other.shutdown()
	if off, code := fetchOffset(t, b, g); code != 0 || off != 5 {
		t.Fatalf("the old shard answers %d %v; the test expects its stale 5", off, kerr.ErrorForCode(code))
	}

	// The reconcile: this node leads at a newer epoch.
	part.SetLeaderEpoch(epoch + 2)
	topic := meta.Topic{Name: OffsetsTopic, Partitions: partitions, Assignments: []meta.PartitionAssignment{
		{Replicas: []int32{1}, Leader: 1, LeaderEpoch: epoch}, {Replicas: []int32{1}, Leader: 1, LeaderEpoch: epoch + 2}}}
	h.follow(topic, 1)
	if err := h.Load(1)(); err != nil {
		t.Fatal(err)
	}
	if s := h.shards[1].Load(); s == old || s.coordinatorEpoch() != epoch+2 {
		t.Fatalf("partition 1 is hosted by a shard of epoch %d, want a new one of epoch %d", s.coordinatorEpoch(), epoch+2)
	}
	if off, code := fetchOffset(t, b, g); code != 0 || off != 9 {
		t.Fatalf("%s after the leadership came back: offset %d %v, want the other coordinator's 9", g, off, kerr.ErrorForCode(code))
	}
	// The partition whose leadership stayed keeps its shard.
	if s := h.shards[0].Load(); s == nil || s.coordinatorEpoch() != epoch {
		t.Fatal("partition 0 was reloaded or unloaded")
	}
}
