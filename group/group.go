package group

import (
	"time"
)

// State is a classic-protocol group state, named as Kafka names it.
type State int8

const (
	Empty State = iota
	PreparingRebalance
	CompletingRebalance
	Stable
	Dead
)

var stateNames = [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "Unknown"
}

type topicPartition struct {
	topic     string
	partition int32
}

// committed is a durable committed offset.
type committed struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitTime  time.Time
}

type protocol struct {
	name     string
	metadata []byte
}

type member struct {
	id           string
	instanceID   *string
	clientID     string
	clientHost   string
	session      time.Duration
	rebalance    time.Duration
	protocolType string
	protocols    []protocol
	assignment   []byte

	// A JoinGroup or SyncGroup waiting for the rebalance.
	joinWaiting bool
	joinReply   ReplyID
	joinVersion int16
	syncWaiting bool
	syncReply   ReplyID
	syncVersion int16

	synced  bool // sent SyncGroup for the current generation
	timer   *timer
	removed bool
}

func (m *member) metadataFor(name string) []byte {
	for _, p := range m.protocols {
		if p.name == name {
			return p.metadata
		}
	}
	return nil
}

type group struct {
	name         string
	state        State
	protocolType string
	protocol     string
	generation   int32
	leader       string
	stateSince   time.Time

	members    map[string]*member
	order      []*member // join order: deterministic iteration
	instances  map[string]*member
	pendingIDs map[string]*timer // member ids handed out with MEMBER_ID_REQUIRED

	initialDelay    bool      // the join phase is the initial delay of an Empty group
	rebalanceEndsBy time.Time // hard end of an initial-delay join phase
	syncInFlight    bool      // the leader's assignment is being persisted
	joinTimer       *timer
	syncTimer       *timer
	retentionTimer  *timer
	offsets         map[topicPartition]committed
	inflight        map[topicPartition]int     // commits not yet durable
	lastWrite       map[topicPartition]BatchID // batch of the newest record per key
	everPersisted   bool                       // a group-metadata record exists in the log
}

func (c *Coordinator) newGroup(name string, now time.Time) *group {
	g := &group{
		name:       name,
		state:      Empty,
		stateSince: now,
		members:    make(map[string]*member),
		instances:  make(map[string]*member),
		pendingIDs: make(map[string]*timer),
		offsets:    make(map[topicPartition]committed),
		inflight:   make(map[topicPartition]int),
		lastWrite:  make(map[topicPartition]BatchID),
	}
	g.joinTimer = newTimer(timerJoin, g)
	g.syncTimer = newTimer(timerSync, g)
	g.retentionTimer = newTimer(timerRetention, g)
	c.groups[name] = g
	return g
}

func (g *group) addMember(m *member) {
	g.members[m.id] = m
	g.order = append(g.order, m)
	if m.instanceID != nil {
		g.instances[*m.instanceID] = m
	}
}

func (g *group) dropMember(m *member) {
	delete(g.members, m.id)
	for i, o := range g.order {
		if o == m {
			g.order = append(g.order[:i], g.order[i+1:]...)
			break
		}
	}
	if m.instanceID != nil && g.instances[*m.instanceID] == m {
		delete(g.instances, *m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
	}
	m.removed = true
}

// maxRebalance is the group's rebalance timeout: the largest of its members'.
func (g *group) maxRebalance() time.Duration {
	var d time.Duration
	for _, m := range g.order {
		d = max(d, m.rebalance)
	}
	return d
}

// supports reports whether a member with these protocols can be in the
// group alongside every member but except.
func (g *group) supports(protocolType string, protos []protocol, except *member) bool {
	others := 0
	for _, m := range g.order {
		if m != except {
			others++
		}
	}
	if others == 0 {
		return protocolType != "" && len(protos) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protos {
		all := true
		for _, m := range g.order {
			if m != except && !hasProtocol(m, p.name) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func hasProtocol(m *member, name string) bool {
	for _, p := range m.protocols {
		if p.name == name {
			return true
		}
	}
	return false
}

// selectProtocol picks the protocol every member supports, by votes: each
// member votes for its most preferred candidate; ties go to the candidate
// the earliest-joined member prefers.
func (g *group) selectProtocol() string {
	if len(g.order) == 0 {
		return ""
	}
	var candidates []string
	for _, p := range g.order[0].protocols {
		all := true
		for _, m := range g.order[1:] {
			if !hasProtocol(m, p.name) {
				all = false
				break
			}
		}
		if all {
			candidates = append(candidates, p.name)
		}
	}
	if len(candidates) == 0 {
		return ""
	}
	votes := make(map[string]int, len(candidates))
	for _, m := range g.order {
		for _, p := range m.protocols {
			if contains(candidates, p.name) {
				votes[p.name]++
				break
			}
		}
	}
	best := candidates[0]
	for _, cand := range candidates[1:] {
		if votes[cand] > votes[best] {
			best = cand
		}
	}
	return best
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func protocolsEqual(a, b []protocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || string(a[i].metadata) != string(b[i].metadata) {
			return false
		}
	}
	return true
}

func (g *group) allJoined() bool {
	if len(g.pendingIDs) > 0 {
		return false
	}
	for _, m := range g.order {
		if !m.joinWaiting {
			return false
		}
	}
	return true
}

func (g *group) hasOffsets() bool { return len(g.offsets) > 0 || len(g.inflight) > 0 }
