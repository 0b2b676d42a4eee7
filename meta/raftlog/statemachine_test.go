package raftlog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/ringtail/ringtail/meta"
)

func newTestMachine() (*stateMachine, *meta.Published, *proposals) {
	var pub meta.Published
	pub.Store(meta.NewState())
	p := newProposals()
	return newStateMachine(&pub, p, &appliedIndex{}), &pub, p
}

func update(t *testing.T, s *stateMachine, index uint64, id proposalID, cmd meta.Command) sm.Result {
	t.Helper()
	r, err := s.Update(sm.Entry{Index: index, Cmd: encodeEntry(id, meta.EncodeCommand(cmd))})
	if err != nil {
		t.Fatalf("Update %T: %v", cmd, err)
	}
	return r
}

func topic(name string, id byte) meta.CreateTopic {
	return meta.CreateTopic{Name: name, ID: [16]byte{id}, Partitions: []meta.NewPartition{{Replicas: []int32{1}, ISR: []int32{1}, Leader: 1}}}
}

// TestUpdateAppliesAndPublishes: an applied command publishes a new state (the old one
// untouched) and wakes watchers; a rejected one publishes nothing; both record what Apply said
// for a tracked proposal, errors with their sentinels.
func TestUpdateAppliesAndPublishes(t *testing.T) {
	s, pub, props := newTestMachine()
	before, changed := pub.Watch()
	id := props.add()
	if r := update(t, s, 1, id, meta.InitCluster{ClusterID: "c"}); r.Value != resultApplied {
		t.Fatalf("InitCluster: result %+v", r)
	}
	select {
	case <-changed:
	default:
		t.Fatal("an applied command did not wake the watcher")
	}
	if before.ClusterID() != "" || pub.Load().ClusterID() != "c" || s.state != pub.Load() {
		t.Fatal("the state was not cloned, applied and published")
	}
	if p, _ := props.get(id); p.applied != 1 || p.first.err != nil {
		t.Fatalf("outcome: %+v", p)
	}

	_, changed = pub.Watch()
	other := props.add()
	if r := update(t, s, 2, other, meta.CreateTopic{Name: "bad name!", ID: [16]byte{1}}); r.Value != resultRejected {
		t.Fatalf("invalid topic: result %+v", r)
	}
	select {
	case <-changed:
		t.Fatal("a rejected command published a state")
	default:
	}
	if p, _ := props.get(other); !errors.Is(p.first.err, meta.ErrInvalidTopic) {
		t.Fatalf("rejection lost its sentinel: %v", p.first.err)
	}

	// An entry proposed elsewhere (an id not tracked here) applies the same way.
	var foreign proposalID
	foreign[0] = 0xff
	update(t, s, 3, foreign, topic("t", 1))
	if _, ok := pub.Load().Topic("t"); !ok {
		t.Fatal("foreign entry not applied")
	}
}

// TestRepeatKeepsFirstOutcome: a proposal whose first attempt applied and whose retry was
// rejected as stale keeps the first attempt's result, which Propose returns.
func TestRepeatKeepsFirstOutcome(t *testing.T) {
	s, _, props := newTestMachine()
	update(t, s, 1, props.add(), meta.InitCluster{ClusterID: "c"})
	id := props.add()
	update(t, s, 2, id, topic("orders", 7))
	update(t, s, 3, id, topic("orders", 7)) // the retry
	p, _ := props.get(id)
	if p.applied != 2 || p.first.err != nil || p.first.res.Topic.Name != "orders" {
		t.Fatalf("first outcome not kept: %+v", p)
	}
	l := &Log{}
	res, err := l.outcome(p, true)
	if err != nil || res.Topic.ID != [16]byte{7} {
		t.Fatalf("outcome: %+v, %v", res, err)
	}

	// Had this replica installed a snapshot meanwhile, and had an attempt timed out, a stale
	// first outcome may hide the proposal's own application: reported as unknown.
	stale := props.add()
	update(t, s, 4, stale, topic("orders", 7))
	props.snapshotInstalled()
	p, _ = props.get(stale)
	if _, err := l.outcome(p, true); !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, meta.ErrStaleCommand) || !errors.Is(err, meta.ErrTopicExists) {
		t.Fatalf("stale after a gap: %v", err)
	}
	if _, err := l.outcome(p, false); errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, meta.ErrStaleCommand) {
		t.Fatalf("stale without an unknown attempt: %v", err)
	}
	props.remove(stale)
	update(t, s, 5, stale, topic("late", 8))
	if _, ok := props.get(stale); ok {
		t.Fatal("a removed proposal is still tracked")
	}
}

// TestUpdateRefusesWhatItCannotRead: an entry this version cannot decode is an error (which
// stops the node), never skipped.
func TestUpdateRefusesWhatItCannotRead(t *testing.T) {
	s, _, _ := newTestMachine()
	var id proposalID
	for name, b := range map[string][]byte{
		"short":       {entryVersion, 1, 2},
		"version":     append([]byte{9}, encodeEntry(id, meta.EncodeCommand(meta.InitCluster{ClusterID: "c"}))[1:]...),
		"unknown tag": encodeEntry(id, []byte{200}),
		"left over":   encodeEntry(id, append(meta.EncodeCommand(meta.InitCluster{ClusterID: "c"}), 0)),
	} {
		if _, err := s.Update(sm.Entry{Index: 1, Cmd: b}); err == nil {
			t.Errorf("%s: Update accepted an entry it cannot read", name)
		}
	}
	if s.state.ClusterID() != "" {
		t.Fatal("state changed")
	}
}

func TestEntryRoundTrip(t *testing.T) {
	p := newProposals()
	a, b := p.add(), p.add()
	if a == b || !bytes.Equal(a[:8], b[:8]) {
		t.Fatalf("ids %x %x: want one nonce, distinct sequence numbers", a, b)
	}
	cmd := topic("x", 3)
	id, got, err := decodeEntry(encodeEntry(a, meta.EncodeCommand(cmd)))
	if err != nil || id != a || !bytes.Equal(meta.EncodeCommand(got), meta.EncodeCommand(cmd)) {
		t.Fatalf("round trip: %x %+v %v", id, got, err)
	}
}

// TestSnapshotRoundTrip: SaveSnapshot then RecoverFromSnapshot into a new machine gives the
// same state, published; a damaged snapshot is refused and changes nothing.
func TestSnapshotRoundTrip(t *testing.T) {
	s, _, props := newTestMachine()
	update(t, s, 1, props.add(), meta.InitCluster{ClusterID: "c"})
	update(t, s, 2, props.add(), topic("a", 1))
	update(t, s, 3, props.add(), meta.AllocateProducerIDs{Count: 5})
	var buf bytes.Buffer
	if err := s.SaveSnapshot(&buf, nil, make(chan struct{})); err != nil {
		t.Fatal(err)
	}

	r, pub, rprops := newTestMachine()
	pending := rprops.add()
	_, changed := pub.Watch()
	if err := r.RecoverFromSnapshot(bytes.NewReader(buf.Bytes()), nil, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub.Load().Snapshot(), s.state.Snapshot()) || r.state != pub.Load() {
		t.Fatal("recovered state differs or is not published")
	}
	select {
	case <-changed:
	default:
		t.Fatal("recovery did not wake the watcher")
	}
	if p, _ := rprops.get(pending); !p.gap {
		t.Fatal("a pending proposal was not marked as possibly applied unseen")
	}
	got, err := r.Lookup(stateQuery{})
	if err != nil || got.(*meta.State) != r.state {
		t.Fatalf("Lookup: %v %v", got, err)
	}
	if _, err := r.Lookup("what"); err == nil {
		t.Fatal("Lookup answered an unknown query")
	}

	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)/2] ^= 1
	if err := r.RecoverFromSnapshot(bytes.NewReader(bad), nil, make(chan struct{})); !errors.Is(err, meta.ErrCorrupt) {
		t.Fatalf("damaged snapshot: %v", err)
	}
	if r.state != pub.Load() || r.state.ClusterID() != "c" {
		t.Fatal("a refused snapshot changed the state")
	}
	stopped := make(chan struct{})
	close(stopped)
	if err := s.SaveSnapshot(&buf, nil, stopped); !errors.Is(err, sm.ErrSnapshotStopped) {
		t.Fatalf("stopped snapshot: %v", err)
	}
}

func TestParsePeers(t *testing.T) {
	peers, err := ParsePeers("1@127.0.0.1:9192, 2@127.0.0.1:9193,3@host.example:9194")
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatPeers(peers); got != "1@127.0.0.1:9192,2@127.0.0.1:9193,3@host.example:9194" {
		t.Fatalf("round trip: %s", got)
	}
	for _, bad := range []string{"", "1", "0@127.0.0.1:1", "x@127.0.0.1:1", "1@127.0.0.1", "1@:9192", "1@a:1,1@b:2", "1@a:1,2@a:1", "1@a:99999"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConfigChecks(t *testing.T) {
	base := Config{Dir: t.TempDir(), ReplicaID: 2, RaftAddress: "127.0.0.1:2", InitialMembers: map[uint64]string{1: "127.0.0.1:1", 2: "127.0.0.1:2"}}
	cfg, err := base.withDefaults()
	if err != nil || cfg.checkMembership() != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, change := range map[string]func(*Config){
		"not a member":  func(c *Config) { c.ReplicaID = 3; c.RaftAddress = "127.0.0.1:3" },
		"other address": func(c *Config) { c.RaftAddress = "127.0.0.1:9" },
		"no members":    func(c *Config) { c.InitialMembers = nil },
		"non-voting":    func(c *Config) { c.NonVoting = true },
		"shared address": func(c *Config) {
			c.InitialMembers = map[uint64]string{1: "127.0.0.1:2", 2: "127.0.0.1:2"}
		},
	} {
		c := base
		change(&c)
		if cfg, err := c.withDefaults(); err == nil && cfg.checkMembership() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := base
	c.ReplicaID = 0
	if _, err := c.withDefaults(); err == nil {
		t.Error("replica id 0 accepted")
	}
	c = base
	c.InitialMembers = nil
	c.Join = true
	if cfg, err := c.withDefaults(); err != nil || cfg.checkMembership() != nil {
		t.Errorf("joining node refused: %v", err)
	}
}

// TestHostnameCheck: Raft data written under another host name is refused with a message that
// names it (dragonboat would refuse it too, less clearly).
func TestHostnameCheck(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir}
	if err := checkHostname(cfg); err != nil {
		t.Fatalf("empty dir: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "nodehost", "some-old-host", "00000000000000000001"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := checkHostname(cfg)
	if !errors.Is(err, ErrHostnameChanged) || !strings.Contains(err.Error(), "some-old-host") {
		t.Fatalf("got %v", err)
	}
	host, _ := os.Hostname()
	if err := os.MkdirAll(filepath.Join(dir, "nodehost", host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkHostname(cfg); err != nil {
		t.Fatalf("this host's directory beside another: %v", err)
	}
}
