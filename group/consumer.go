package group

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The consumer rebalance protocol (KIP-848, group.protocol=consumer), as a pure state machine
// beside the classic groups: ConsumerGroupHeartbeat. The coordinator owns the assignment:
//
//   - The group epoch counts changes of membership, subscriptions or subscribed partitions;
//     each new group epoch gets a target assignment from the server-side assignor
//     (assignor.go), whose epoch is the group epoch.
//   - Each member moves towards its target on its own heartbeats, one step at a time:
//     partitions it owns that its target no longer holds are revoked first, and the member
//     keeps its epoch until it acknowledges the revocation (a heartbeat whose owned partitions
//     no longer name them); then it gets the target epoch and those partitions of its target
//     that no other member holds. A partition goes to a new owner only once the previous owner
//     released it (acknowledged, left, or was removed): never two owners at once.
//   - A member not heard from for the session timeout is removed; one that does not
//     acknowledge a revocation within its rebalance timeout is removed (fenced) too.
//   - A heartbeat at an epoch the member has not reached, or at an older one other than its
//     previous epoch with no partitions beyond what it holds (a lost response), is fenced:
//     FENCED_MEMBER_EPOCH, and the member rejoins at epoch 0, having dropped everything.
//   - Static members (group.instance.id): leaving with epoch -2 keeps the member and its
//     partitions for the session timeout; the same instance joining again takes them over.
//   - SubscribedTopicRegex (Go's RE2 syntax, which matches RE2/J for the usual expressions) is
//     resolved against the topics the caller lists, on every heartbeat, so new topics join.
//
// Not here yet: persistence of consumer groups in __consumer_offsets (Kafka's ConsumerGroup*
// records; a restart loses them and members rejoin when fenced), OffsetCommit with member
// epochs, ConsumerGroupDescribe, and conversion between classic and consumer groups. The
// broker does not route these requests to it, nor advertise the APIs.

// ConsumerTopics is what the consumer protocol needs of the cluster's topics.
type ConsumerTopics interface {
	// TopicByName returns a topic's id and partition count.
	TopicByName(name string) (id [16]byte, partitions int32, ok bool)
	// TopicNames lists every topic, for regex subscriptions.
	TopicNames() []string
}

// Consumer protocol defaults (Kafka's group.consumer.* settings).
const (
	defaultConsumerSession   = 45 * time.Second // group.consumer.session.timeout.ms
	defaultConsumerHeartbeat = 5 * time.Second  // group.consumer.heartbeat.interval.ms
)

type consumerGroup struct {
	name        string
	epoch       int32 // group epoch
	targetEpoch int32 // epoch of target
	members     map[string]*consumerMember
	target      map[string]map[topicPartition]bool // member id → target partitions
	owner       map[topicPartition]string          // who holds a partition (assigned or revoking)
	partitions  map[string]int32                   // subscribed topics → partitions at the last check
	instances   map[string]string                  // static instance id → member id

	// Persistence (persistConsumer): members changed since the group was last written, and
	// the epochs last written.
	touched                      map[string]bool
	savedEpoch, savedTargetEpoch int32
}

type consumerMember struct {
	id, clientID, clientHost string
	instanceID               *string
	rack                     *string
	epoch, prevEpoch         int32
	topics                   []string // SubscribedTopicNames, sorted
	regex                    *regexp.Regexp
	assignor                 string // ServerAssignor asked for, "" none
	rebalance                time.Duration
	assigned                 map[topicPartition]bool  // held, given to the client
	since                    map[topicPartition]int32 // the member epoch each assigned partition came with
	changes, sent            int                      // assignment changes, and the count last sent
	revoking                 map[topicPartition]bool  // held until the client acknowledges
	unreleased               int                      // target partitions still held by others
	staticLeft               bool                     // left with epoch -2: kept for the session
	session, revokeBy        *timer

	savedMeta, savedTarget, savedCurrent []byte // the values last written
}

func newConsumerGroup(name string) *consumerGroup {
	return &consumerGroup{
		name: name, members: make(map[string]*consumerMember),
		target: make(map[string]map[topicPartition]bool), owner: make(map[topicPartition]string),
		partitions: make(map[string]int32), instances: make(map[string]string),
		touched: make(map[string]bool),
	}
}

// ConsumerGroupHeartbeat handles one heartbeat of the consumer protocol. An answer that
// carries a change (an epoch, an assignment, a leave) waits for the records of that change
// (answerConsumer); errors and heartbeats that change nothing are answered at once.
func (c *Coordinator) ConsumerGroupHeartbeat(now time.Time, reply ReplyID, cl Client, req *kmsg.ConsumerGroupHeartbeatRequest) Ready {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	resp.MemberEpoch = req.MemberEpoch
	resp.HeartbeatIntervalMillis = int32(c.cfg.ConsumerHeartbeatInterval.Milliseconds())
	fail := func(e *kerr.Error, msg string) Ready {
		resp.ErrorCode, resp.ErrorMessage = e.Code, &msg
		c.send(reply, resp)
		return c.flush()
	}
	switch {
	case c.cfg.ConsumerTopics == nil:
		return fail(kerr.UnsupportedVersion, "The consumer protocol is not enabled on this coordinator.")
	case req.Group == "":
		return fail(kerr.InvalidRequest, "GroupId can't be empty.")
	case req.MemberID == "" && (req.MemberEpoch != 0 || req.Version >= 1):
		return fail(kerr.InvalidRequest, "MemberId can't be empty.")
	case req.MemberEpoch < -2:
		return fail(kerr.InvalidRequest, "MemberEpoch is invalid.")
	case req.MemberEpoch == 0 && req.RebalanceTimeoutMillis <= 0:
		return fail(kerr.InvalidRequest, "RebalanceTimeoutMs must be provided in the first request.")
	case req.MemberEpoch == 0 && req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil:
		return fail(kerr.InvalidRequest, "SubscribedTopicNames or SubscribedTopicRegex must be set in the first request.")
	case req.MemberEpoch == -2 && req.InstanceID == nil:
		return fail(kerr.InvalidRequest, "InstanceId can't be null when leaving with epoch -2.")
	case req.ServerAssignor != nil && !slices.Contains(c.cfg.ConsumerAssignors, *req.ServerAssignor):
		return fail(kerr.UnsupportedAssignor, "ServerAssignor "+*req.ServerAssignor+" is not supported. Supported assignors: "+strings.Join(c.cfg.ConsumerAssignors, ", ")+".")
	}
	var re *regexp.Regexp
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != "" {
		var err error
		if re, err = regexp.Compile(*req.SubscribedTopicRegex); err != nil {
			return fail(kerr.InvalidRegularExpression, err.Error())
		}
	}
	if g := c.groups[req.Group]; g != nil && len(g.members) > 0 {
		// Kafka's group.consumer.migration.policy=disabled: a classic group with members is not
		// converted (an empty one is: its offsets stay). The consumer-protocol member retries
		// (franz-go does) and gets in once the classic members are gone.
		return fail(kerr.GroupIDNotFound, "Cannot upgrade classic group "+req.Group+" to consumer group because the online upgrade is disabled.")
	}
	g := c.cgroups[req.Group]
	if g == nil {
		if req.MemberEpoch != 0 {
			return fail(kerr.UnknownMemberID, "Group "+req.Group+" has no member "+req.MemberID+".")
		}
		g = newConsumerGroup(req.Group)
		c.cgroups[req.Group] = g
	}

	if req.MemberEpoch < 0 {
		m := g.members[req.MemberID]
		if m == nil {
			return fail(kerr.UnknownMemberID, "Group "+req.Group+" has no member "+req.MemberID+".")
		}
		if req.MemberEpoch == -2 && m.instanceID != nil {
			// It keeps its partitions until its session ends or it returns; a lost response
			// of its last epoch no longer matters (the record keeps one epoch, as Kafka's).
			m.staticLeft, m.prevEpoch = true, m.epoch
			g.touched[m.id] = true
			c.arm(m.session, now.Add(c.cfg.ConsumerSessionTimeout))
		} else {
			c.removeConsumer(g, m)
		}
		resp.MemberID = &req.MemberID
		return c.answerConsumer(g, reply, resp)
	}

	if max := c.cfg.ConsumerMaxSize; max > 0 && req.MemberEpoch == 0 && g.members[req.MemberID] == nil && len(g.members) >= max {
		// As Kafka: only a new member is refused; one that is in the group (a rejoin at epoch
		// 0 included) goes on.
		return fail(kerr.GroupMaxSizeReached, fmt.Sprintf("The consumer group has reached its maximum capacity of %d members.", max))
	}
	m, changed, e := c.consumerMemberFor(now, g, cl, req)
	if e != nil {
		if len(g.members) == 0 && g.epoch == 0 {
			delete(c.cgroups, g.name) // created for this join, which failed
		}
		return fail(e, e.Description)
	}
	c.arm(m.session, now.Add(c.cfg.ConsumerSessionTimeout))
	if req.SubscribedTopicNames != nil {
		topics := slices.Clone(req.SubscribedTopicNames)
		slices.Sort(topics)
		topics = slices.Compact(topics)
		if !slices.Equal(topics, m.topics) {
			m.topics, changed = topics, true
		}
	}
	if req.SubscribedTopicRegex != nil && regexSource(re) != regexSource(m.regex) {
		m.regex, changed = re, true
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.assignor {
		m.assignor, changed = *req.ServerAssignor, true
	}
	if req.RebalanceTimeoutMillis > 0 {
		m.rebalance = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	}
	if changed {
		g.touched[m.id] = true
	}
	c.refreshTarget(g, changed)
	c.reconcile(now, g, m, c.ownedIn(req))

	resp.MemberID = &m.id
	resp.MemberEpoch = m.epoch
	// As Kafka: the assignment goes out when it changed since the member last got it, or when
	// the member said what it owns (a full request); a keepalive gets none ("unchanged").
	if m.changes == m.sent && req.Topics == nil && req.MemberEpoch != 0 {
		return c.answerConsumer(g, reply, resp)
	}
	m.sent = m.changes
	a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
	byTopic := make(map[string][]int32)
	for tp := range m.assigned {
		byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
	}
	for _, topic := range sortedKeys(byTopic) {
		id, _, ok := c.cfg.ConsumerTopics.TopicByName(topic)
		if !ok {
			continue // deleted: the next target drops it
		}
		ps := byTopic[topic]
		slices.Sort(ps)
		a.Topics = append(a.Topics, kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{TopicID: id, Partitions: ps})
	}
	resp.Assignment = &a
	return c.answerConsumer(g, reply, resp)
}

// answerConsumer writes what the heartbeat changed and answers it once that is durable (with
// the write's error if it failed): a member never acts on an epoch or an assignment that a
// restart could take back.
func (c *Coordinator) answerConsumer(g *consumerGroup, reply ReplyID, resp *kmsg.ConsumerGroupHeartbeatResponse) Ready {
	c.persistConsumer(g)
	if len(c.out.Records) == 0 {
		c.send(reply, resp)
		return c.flush()
	}
	c.afterPersist(func(_ time.Time, code int16) {
		if code != 0 {
			resp.ErrorCode, resp.Assignment = code, nil
		}
		c.send(reply, resp)
	})
	return c.flush()
}

// consumerMemberFor finds or creates the member a heartbeat speaks for, and checks its epoch;
// added says the membership changed.
func (c *Coordinator) consumerMemberFor(now time.Time, g *consumerGroup, cl Client, req *kmsg.ConsumerGroupHeartbeatRequest) (m *consumerMember, added bool, _ *kerr.Error) {
	m = g.members[req.MemberID]
	if req.MemberEpoch > 0 {
		switch {
		case m == nil:
			return nil, false, kerr.UnknownMemberID
		case m.staticLeft:
			return nil, false, kerr.FencedMemberEpoch // it left (epoch -2); it rejoins at 0
		case req.MemberEpoch == m.epoch:
		case req.MemberEpoch == m.prevEpoch && req.Topics != nil && c.ownsNoMore(m, c.ownedIn(req)):
			// The response that moved the member on was lost; it gets it again (as Kafka: only
			// when it says what it owns, and that is no more than it holds).
		default:
			return nil, false, kerr.FencedMemberEpoch
		}
		return m, false, nil
	}
	// Epoch 0: a join, or a rejoin of a member that dropped everything.
	if m != nil {
		g.touched[m.id] = true
		c.release(g, m)
		m.epoch, m.prevEpoch, m.unreleased = 0, 0, 0
		return m, false, nil
	}
	id := req.MemberID
	if id == "" {
		id = c.newMemberID(cl.ID)
	}
	m = &consumerMember{
		id: id, clientID: cl.ID, clientHost: cl.Host, instanceID: req.InstanceID, rack: req.RackID,
		assigned: make(map[topicPartition]bool), revoking: make(map[topicPartition]bool),
		since: make(map[topicPartition]int32),
	}
	m.session = &timer{idx: -1, kind: timerConsumerSession, cg: g, cm: m}
	m.revokeBy = &timer{idx: -1, kind: timerConsumerRevoke, cg: g, cm: m}
	if req.InstanceID != nil {
		if oldID, ok := g.instances[*req.InstanceID]; ok {
			old := g.members[oldID]
			if old != nil && !old.staticLeft {
				return nil, false, kerr.UnreleasedInstanceID
			}
			if old != nil {
				// The instance is back: it takes over the old member's epoch and partitions
				// without a rebalance.
				c.disarm(old.session)
				c.disarm(old.revokeBy)
				delete(g.members, oldID)
				c.persistMemberGone(g, oldID)
				m.epoch, m.prevEpoch, m.topics, m.regex, m.assignor = old.epoch, old.prevEpoch, old.topics, old.regex, old.assignor
				m.assigned, m.revoking, m.since, m.rebalance = old.assigned, old.revoking, old.since, old.rebalance
				for tp := range m.assigned {
					g.owner[tp] = m.id
				}
				for tp := range m.revoking {
					g.owner[tp] = m.id
				}
				g.target[m.id] = g.target[oldID]
				delete(g.target, oldID)
				if len(m.revoking) > 0 {
					c.arm(m.revokeBy, now.Add(m.rebalance))
				}
			}
		}
		g.instances[*req.InstanceID] = m.id
	}
	g.members[m.id] = m
	g.touched[m.id] = true
	_, kept := g.target[m.id] // a static member taking over needs no new epoch
	return m, !kept, nil
}

// ownedIn returns the partitions a heartbeat says its member owns, nil when it does not say.
func (c *Coordinator) ownedIn(req *kmsg.ConsumerGroupHeartbeatRequest) map[topicPartition]bool {
	if req.Topics == nil {
		return nil
	}
	names := make(map[[16]byte]string)
	for _, name := range c.cfg.ConsumerTopics.TopicNames() {
		if id, _, ok := c.cfg.ConsumerTopics.TopicByName(name); ok {
			names[id] = name
		}
	}
	owned := make(map[topicPartition]bool)
	for _, t := range req.Topics {
		name, ok := names[t.TopicID]
		if !ok {
			continue // a deleted topic: nothing to hand over
		}
		for _, p := range t.Partitions {
			owned[topicPartition{name, p}] = true
		}
	}
	return owned
}

// ownsNoMore: the client claims nothing beyond what the coordinator gave it.
func (c *Coordinator) ownsNoMore(m *consumerMember, owned map[topicPartition]bool) bool {
	for tp := range owned {
		if !m.assigned[tp] && !m.revoking[tp] {
			return false
		}
	}
	return true
}

// refreshTarget bumps the group epoch when bump says the membership or a subscription changed
// or the subscribed topics' partitions did (once per heartbeat, as Kafka does), and computes a
// new target assignment when the group epoch moved.
func (c *Coordinator) refreshTarget(g *consumerGroup, bump bool) {
	subscribed := make(map[string][]string, len(g.members))
	parts := c.subscribedPartitions(g, subscribed)
	if !mapsEqual(parts, g.partitions) {
		g.partitions = parts
		bump = true
	}
	if bump {
		g.epoch++
	}
	if g.epoch == g.targetEpoch {
		return
	}
	members := sortedKeys(g.members)
	for _, id := range members {
		g.touched[id] = true
	}
	g.target = assign(g.assignor(c.cfg.ConsumerAssignors), assignInput{members: members, subscribed: subscribed, partitions: parts, previous: g.target})
	g.targetEpoch = g.epoch
}

// subscribedPartitions returns the partition count of every topic a member of g subscribes to
// (by name or regex) that exists; subscribed, when not nil, gets each member's topics.
func (c *Coordinator) subscribedPartitions(g *consumerGroup, subscribed map[string][]string) map[string]int32 {
	parts := make(map[string]int32)
	var all []string
	for id, m := range g.members {
		topics := slices.Clone(m.topics)
		if m.regex != nil {
			if all == nil {
				all = c.cfg.ConsumerTopics.TopicNames()
			}
			for _, t := range all {
				if m.regex.MatchString(t) && !slices.Contains(topics, t) {
					topics = append(topics, t)
				}
			}
		}
		var known []string
		for _, t := range topics {
			if _, n, ok := c.cfg.ConsumerTopics.TopicByName(t); ok && n > 0 {
				parts[t] = n
				known = append(known, t)
			}
		}
		if subscribed != nil {
			subscribed[id] = known
		}
	}
	return parts
}

// assignor is the one most members ask for, of those configured (ties to the earlier one in
// the configured order); the first configured one when no member names one.
func (g *consumerGroup) assignor(configured []string) string {
	votes := map[string]int{}
	for _, m := range g.members {
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	best := configured[0]
	for _, name := range configured {
		if votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// reconcile moves m one step towards its target; owned is what its heartbeat says it holds.
func (c *Coordinator) reconcile(now time.Time, g *consumerGroup, m *consumerMember, owned map[topicPartition]bool) {
	changes, epoch, unreleased := m.changes, m.epoch, m.unreleased
	defer func() {
		if m.changes != changes || m.epoch != epoch || m.unreleased != unreleased {
			g.touched[m.id] = true // its current assignment is written again
		}
	}()
	if len(m.revoking) > 0 {
		if owned == nil {
			return
		}
		for tp := range m.revoking {
			if owned[tp] {
				return // not yet acknowledged
			}
		}
		for tp := range m.revoking {
			if g.owner[tp] == m.id {
				delete(g.owner, tp)
			}
		}
		m.revoking = make(map[topicPartition]bool)
		m.changes++
		c.disarm(m.revokeBy)
	}
	target := g.target[m.id]
	if m.epoch == g.targetEpoch && m.unreleased == 0 {
		return
	}
	for tp := range m.assigned {
		if !target[tp] {
			delete(m.assigned, tp)
			delete(m.since, tp)
			m.revoking[tp] = true
			m.changes++
		}
	}
	if len(m.revoking) > 0 {
		c.arm(m.revokeBy, now.Add(m.rebalance))
		return // keeps its epoch until it acknowledges
	}
	m.unreleased = 0
	for tp := range target {
		switch owner := g.owner[tp]; {
		case m.assigned[tp]:
		case owner == "" || owner == m.id:
			m.assigned[tp] = true
			m.since[tp] = g.targetEpoch
			g.owner[tp] = m.id
			m.changes++
		default:
			m.unreleased++
		}
	}
	if m.epoch != g.targetEpoch {
		m.prevEpoch, m.epoch = m.epoch, g.targetEpoch
	}
}

// release frees every partition m holds.
func (c *Coordinator) release(g *consumerGroup, m *consumerMember) {
	for _, set := range []map[topicPartition]bool{m.assigned, m.revoking} {
		for tp := range set {
			if g.owner[tp] == m.id {
				delete(g.owner, tp)
			}
			delete(set, tp)
			delete(m.since, tp)
			m.changes++
		}
	}
	c.disarm(m.revokeBy)
}

// removeConsumer takes m out of its group, freeing its partitions; the group epoch moves on.
func (c *Coordinator) removeConsumer(g *consumerGroup, m *consumerMember) {
	c.release(g, m)
	c.disarm(m.session)
	delete(g.members, m.id)
	delete(g.target, m.id)
	if m.instanceID != nil && g.instances[*m.instanceID] == m.id {
		delete(g.instances, *m.instanceID)
	}
	g.epoch++
	c.persistMemberGone(g, m.id)
}

func (c *Coordinator) fireConsumer(t *timer) {
	g, m := t.cg, t.cm
	if c.cgroups[g.name] != g || g.members[m.id] != m {
		return // stale
	}
	c.removeConsumer(g, m) // session over, or a revocation not acknowledged in time
	c.persistConsumer(g)
}

func regexSource(re *regexp.Regexp) string {
	if re == nil {
		return ""
	}
	return re.String()
}

func mapsEqual(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, strings.Compare)
	return out
}
