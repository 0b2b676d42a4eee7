package e2e

// The cluster soak's view of the brokers (see TestClusterSoak): what each one serves, read
// straight from it, and the checks on those views.
//
// A view is two reads of one broker: its /debug/ringtail/metadata document (the committed
// metadata it follows, with the broker and partition epochs that Kafka's Metadata does not
// carry) and its answer to Metadata (what clients see). The document is one applied state, so
// the checks on one document are exact. Two brokers' views are read one after the other, so
// they agree only once the cluster is quiet: the settle waits poll until they do.
//
// Checks come in two kinds:
//   - safety, on every view of every broker, at any time, faults or not (observe): a leader is
//     in its ISR and on a registered, unfenced broker; the ISR lies within the replicas; a
//     partition's replicas never change (nothing reassigns them yet); no epoch a broker shows
//     (leader, partition, broker, config) is lower than one it showed before, kill -9 and
//     restarts included (a restarted node replays its log before it serves); a topic id a
//     broker stopped listing never comes back on it; a name never changes its id.
//   - settled, once the brokers that should be live agree (settle): the same document and the
//     same Metadata from each; exactly those brokers live and unfenced, the others fenced;
//     every partition led by a live broker of its ISR, or offline (-1) only when its ISR holds
//     no live broker; epochs no lower than at any earlier settled point; and, with every
//     broker back, the client's topics as its acknowledged requests say (soakModel.check).

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// soakDoc is the JSON of /debug/ringtail/metadata (cmd/ringtail/debug.go).
type soakDoc struct {
	NodeID     int32        `json:"node_id"`
	Controller int32        `json:"controller"`
	ClusterID  string       `json:"cluster_id"`
	Brokers    []soakBroker `json:"brokers"`
	Topics     []soakTopic  `json:"topics"`
}

type soakBroker struct {
	ID                   int32  `json:"id"`
	Epoch                int64  `json:"epoch"`
	Listener             string `json:"listener"`
	Fenced               bool   `json:"fenced"`
	InControlledShutdown bool   `json:"in_controlled_shutdown"`
}

type soakTopic struct {
	Name        string            `json:"name"`
	ID          string            `json:"id"`
	ConfigEpoch int32             `json:"config_epoch"`
	Configs     map[string]string `json:"configs"`
	Partitions  []soakPartition   `json:"partitions"`
}

type soakPartition struct {
	Partition      int32   `json:"partition"`
	Replicas       []int32 `json:"replicas"`
	Leader         int32   `json:"leader"`
	LeaderEpoch    int32   `json:"leader_epoch"`
	PartitionEpoch int32   `json:"partition_epoch"`
	ISR            []int32 `json:"isr"`
}

// soakView is what one broker serves at one moment.
type soakView struct {
	broker int32
	doc    soakDoc
	md     *kmsg.MetadataResponse
}

// fetchView reads broker b's document and its Metadata answer (every topic).
func (s *soak) fetchView(b *cluster.Broker) (soakView, error) {
	v := soakView{broker: int32(b.ID())}
	resp, err := s.http.Get("http://" + b.ExtraAddr("debug") + "/debug/ringtail/metadata")
	if err != nil {
		return v, fmt.Errorf("broker %d: %w", b.ID(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("broker %d: %s from its metadata document", b.ID(), resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v.doc); err != nil {
		return v, fmt.Errorf("broker %d: metadata document: %w", b.ID(), err)
	}
	rc, err := dialRawErr(b.Addr())
	if err != nil {
		return v, fmt.Errorf("broker %d: %w", b.ID(), err)
	}
	defer rc.Close()
	if v.md, err = metadataRawTopics(rc, nil); err != nil {
		return v, fmt.Errorf("broker %d: Metadata: %w", b.ID(), err)
	}
	return v, nil
}

// partKey names a partition across renames and re-creations: by topic id.
type partKey struct {
	topicID   string
	partition int32
}

type epochs struct{ leader, partition int32 }

// soakHistory is what the checks remember across the run.
type soakHistory struct {
	// per viewing broker: the highest epochs it showed, the topic ids it lists now and those
	// it listed once and no more
	parts        map[int32]map[partKey]epochs
	brokerEpochs map[int32]map[int32]int64
	configEpochs map[int32]map[string]int32
	listed       map[int32]map[string]bool
	dropped      map[int32]map[string]string // topic id → name
	// across brokers
	replicas   map[partKey][]int32 // as first seen
	topicIDs   map[string]string   // name → id, as first seen
	settled    map[partKey]epochs  // at the last settled point
	settledBrk map[int32]int64
}

func newSoakHistory() *soakHistory {
	return &soakHistory{
		parts: map[int32]map[partKey]epochs{}, brokerEpochs: map[int32]map[int32]int64{},
		configEpochs: map[int32]map[string]int32{}, listed: map[int32]map[string]bool{},
		dropped: map[int32]map[string]string{}, replicas: map[partKey][]int32{},
		topicIDs: map[string]string{}, settled: map[partKey]epochs{}, settledBrk: map[int32]int64{},
	}
}

// of returns m[k], made on first use.
func of[K comparable, K2 comparable, V any](m map[K]map[K2]V, k K) map[K2]V {
	if m[k] == nil {
		m[k] = map[K2]V{}
	}
	return m[k]
}

// observe runs the safety checks on one view and remembers it; a violation fails the run.
func (s *soak) observe(v soakView) {
	h, d, me := s.hist, v.doc, v.broker
	s.stats.views++
	if d.NodeID != me {
		s.failf("broker %d's metadata document says node %d", me, d.NodeID)
	}
	registered := map[int32]soakBroker{}
	for _, b := range d.Brokers {
		registered[b.ID] = b
		if was := of(h.brokerEpochs, me)[b.ID]; b.Epoch < was {
			s.failf("broker %d shows broker %d at broker epoch %d, after showing %d", me, b.ID, b.Epoch, was)
		}
		h.brokerEpochs[me][b.ID] = b.Epoch
	}
	now := map[string]bool{}
	for _, t := range d.Topics {
		now[t.ID] = true
		if id, ok := h.topicIDs[t.Name]; ok && id != t.ID {
			s.failf("broker %d lists topic %s with id %s; it had id %s (names are never reused here)", me, t.Name, t.ID, id)
		}
		h.topicIDs[t.Name] = t.ID
		if name, ok := of(h.dropped, me)[t.ID]; ok {
			s.failf("broker %d lists topic %s (id %s) again after it had dropped it", me, name, t.ID)
		}
		if was, ok := of(h.configEpochs, me)[t.ID]; ok && t.ConfigEpoch < was {
			s.failf("broker %d shows topic %s at config epoch %d, after showing %d", me, t.Name, t.ConfigEpoch, was)
		}
		h.configEpochs[me][t.ID] = t.ConfigEpoch
		for _, p := range t.Partitions {
			s.stats.partitionChecks++
			name := fmt.Sprintf("broker %d: %s-%d %s", me, t.Name, p.Partition, describePartition(p))
			if err := partitionShape(p, registered); err != nil {
				s.failf("%s: %v", name, err)
			}
			k := partKey{t.ID, p.Partition}
			if first, ok := h.replicas[k]; !ok {
				h.replicas[k] = slices.Clone(p.Replicas)
			} else if !slices.Equal(first, p.Replicas) {
				s.failf("%s: replicas changed from %v (nothing reassigns partitions)", name, first)
			}
			was, ok := of(h.parts, me)[k]
			if ok && (p.LeaderEpoch < was.leader || p.PartitionEpoch < was.partition) {
				s.failf("%s: epochs went back: this broker showed leader epoch %d, partition epoch %d before", name, was.leader, was.partition)
			}
			h.parts[me][k] = epochs{p.LeaderEpoch, p.PartitionEpoch}
		}
	}
	for id := range of(h.listed, me) {
		if !now[id] {
			of(h.dropped, me)[id] = topicNameByID(h, id)
		}
	}
	h.listed[me] = now
}

// partitionShape checks what holds of every partition in any committed state.
func partitionShape(p soakPartition, registered map[int32]soakBroker) error {
	if len(p.Replicas) == 0 || hasDup(p.Replicas) {
		return errors.New("replicas empty or repeated")
	}
	if len(p.ISR) == 0 || hasDup(p.ISR) {
		return errors.New("ISR empty or repeated")
	}
	for _, r := range p.ISR {
		if !slices.Contains(p.Replicas, r) {
			return fmt.Errorf("ISR member %d is not a replica", r)
		}
	}
	if p.LeaderEpoch < 0 || p.PartitionEpoch < p.LeaderEpoch {
		return errors.New("partition epoch below leader epoch (each leader change bumps both)")
	}
	if p.Leader == -1 {
		return nil
	}
	if !slices.Contains(p.ISR, p.Leader) {
		return fmt.Errorf("leader %d not in its ISR", p.Leader)
	}
	if b, ok := registered[p.Leader]; !ok || b.Fenced {
		return fmt.Errorf("leader %d is fenced or not registered (a broker is fenced only once it leads nothing)", p.Leader)
	}
	return nil
}

func hasDup(ids []int32) bool {
	s := slices.Clone(ids)
	slices.Sort(s)
	return len(slices.Compact(s)) != len(ids)
}

func topicNameByID(h *soakHistory, id string) string {
	for name, tid := range h.topicIDs {
		if tid == id {
			return name
		}
	}
	return "?"
}

func describePartition(p soakPartition) string {
	return fmt.Sprintf("(replicas %v, leader %d, leader epoch %d, partition epoch %d, ISR %v)",
		p.Replicas, p.Leader, p.LeaderEpoch, p.PartitionEpoch, p.ISR)
}

// views reads and observes every broker in ids.
func (s *soak) views(ids []int32) (map[int32]soakView, error) {
	out := map[int32]soakView{}
	for _, id := range ids {
		v, err := s.fetchView(s.c.Broker(int(id)))
		if err != nil {
			return nil, err
		}
		s.observe(v)
		out[id] = v
	}
	return out, nil
}

// settled checks that the views of the live brokers agree and that the cluster is settled
// with exactly live live: the settle condition (an error means "not yet").
func settled(vs map[int32]soakView, live []int32) error {
	var first soakView
	var firstDoc, firstMD string
	for i, id := range live {
		v := vs[id]
		doc, md := docKey(v.doc), mdKey(v.md)
		if i == 0 {
			first, firstDoc, firstMD = v, doc, md
			continue
		}
		if doc != firstDoc {
			return fmt.Errorf("brokers %d and %d follow different metadata:\n%s\n%s", first.broker, id, doc, firstDoc)
		}
		if md != firstMD {
			return fmt.Errorf("brokers %d and %d answer Metadata differently:\n%s\n%s", first.broker, id, md, firstMD)
		}
	}
	d, md := first.doc, first.md
	var got []int32
	for _, b := range md.Brokers {
		got = append(got, b.NodeID)
	}
	slices.Sort(got)
	if !slices.Equal(got, live) {
		return fmt.Errorf("Metadata lists brokers %v, want %v", got, live)
	}
	if !slices.Contains(live, md.ControllerID) || d.Controller != md.ControllerID {
		return fmt.Errorf("controller %d (document: %d), want one of %v", md.ControllerID, d.Controller, live)
	}
	for _, b := range d.Brokers {
		isLive := slices.Contains(live, b.ID)
		if isLive && (b.Fenced || b.InControlledShutdown) {
			return fmt.Errorf("broker %d is fenced or shutting down", b.ID)
		}
		if !isLive && !b.Fenced {
			return fmt.Errorf("broker %d is down but not fenced", b.ID)
		}
	}
	mdParts := map[string]kmsg.MetadataResponseTopicPartition{}
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			mdParts[fmt.Sprintf("%s-%d", *t.Topic, p.Partition)] = p
		}
	}
	for _, t := range d.Topics {
		for _, p := range t.Partitions {
			name := fmt.Sprintf("%s-%d", t.Name, p.Partition)
			liveISR := slices.ContainsFunc(p.ISR, func(r int32) bool { return slices.Contains(live, r) })
			switch {
			case p.Leader == -1 && liveISR:
				return fmt.Errorf("%s %s is offline though its ISR holds a live broker", name, describePartition(p))
			case p.Leader != -1 && !slices.Contains(live, p.Leader):
				return fmt.Errorf("%s %s is led by a broker that is down", name, describePartition(p))
			}
			mp, ok := mdParts[name]
			if !ok || mp.Leader != p.Leader || mp.LeaderEpoch != p.LeaderEpoch || !slices.Equal(mp.Replicas, p.Replicas) ||
				!slices.Equal(mp.ISR, p.ISR) {
				return fmt.Errorf("%s: Metadata says leader %d epoch %d replicas %v ISR %v, the document %s",
					name, mp.Leader, mp.LeaderEpoch, mp.Replicas, mp.ISR, describePartition(p))
			}
			var offline []int32
			for _, r := range p.Replicas {
				if !slices.Contains(live, r) {
					offline = append(offline, r)
				}
			}
			if !slices.Equal(sorted(mp.OfflineReplicas), offline) { // nil and empty are equal here
				return fmt.Errorf("%s: offline replicas %v, want %v", name, mp.OfflineReplicas, offline)
			}
		}
	}
	return nil
}

func sorted(ids []int32) []int32 {
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
}

// docKey is a document with its node id left out: equal on brokers that follow the same state.
func docKey(d soakDoc) string {
	d.NodeID = 0
	b, _ := json.Marshal(d) // map keys sorted; brokers and topics come sorted
	return string(b)
}

// mdKey is a Metadata answer in a canonical form: brokers, controller, and per topic its id and
// per partition its error, leader, leader epoch, replicas, ISR and offline replicas.
func mdKey(md *kmsg.MetadataResponse) string {
	var sb strings.Builder
	brokers := slices.Clone(md.Brokers)
	sort.Slice(brokers, func(i, j int) bool { return brokers[i].NodeID < brokers[j].NodeID })
	for _, b := range brokers {
		fmt.Fprintf(&sb, "broker %d %s:%d; ", b.NodeID, b.Host, b.Port)
	}
	fmt.Fprintf(&sb, "controller %d\n", md.ControllerID)
	topics := slices.Clone(md.Topics)
	sort.Slice(topics, func(i, j int) bool { return *topics[i].Topic < *topics[j].Topic })
	for _, t := range topics {
		fmt.Fprintf(&sb, "%s %x err %d:", *t.Topic, t.TopicID, t.ErrorCode)
		parts := slices.Clone(t.Partitions)
		sort.Slice(parts, func(i, j int) bool { return parts[i].Partition < parts[j].Partition })
		for _, p := range parts {
			fmt.Fprintf(&sb, " [%d err %d leader %d@%d replicas %v isr %v offline %v]", p.Partition, p.ErrorCode,
				p.Leader, p.LeaderEpoch, p.Replicas, p.ISR, p.OfflineReplicas)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// checkSettled runs the run-long checks on a settled document: no epoch lower than at the
// last settled point.
func (s *soak) checkSettled(d soakDoc) {
	h := s.hist
	for _, b := range d.Brokers {
		if b.Epoch < h.settledBrk[b.ID] {
			s.failf("settled: broker %d at broker epoch %d, was %d at an earlier settled point", b.ID, b.Epoch, h.settledBrk[b.ID])
		}
		h.settledBrk[b.ID] = b.Epoch
	}
	for _, t := range d.Topics {
		for _, p := range t.Partitions {
			k := partKey{t.ID, p.Partition}
			if was, ok := h.settled[k]; ok && (p.LeaderEpoch < was.leader || p.PartitionEpoch < was.partition) {
				s.failf("settled: %s-%d %s: epochs lower than at an earlier settled point (leader epoch %d, partition epoch %d)",
					t.Name, p.Partition, describePartition(p), was.leader, was.partition)
			}
			h.settled[k] = epochs{p.LeaderEpoch, p.PartitionEpoch}
		}
	}
}

// brokerState is what the nemesis has done to a broker, so that the checks know whether it
// should be running.
type brokerState int

const (
	brokerUp     brokerState = iota
	brokerPaused             // SIGSTOP: running, answering nothing
	brokerCut                // cut off from the other brokers; the test still reaches it
	brokerDown               // killed or stopped by the nemesis
)

// checkProcesses fails the run if a broker that should be running exited (a crash), and scans
// the new part of every broker's log for panics and fatal errors.
func (s *soak) checkProcesses() {
	for _, b := range s.c.Brokers() {
		i := b.ID() - 1
		if s.state[i] != brokerDown && !b.Running() {
			s.failf("broker %d exited on its own (%s); its log ends:\n%s", b.ID(), exitStatus(b.Process()), b.LogTail(8<<10))
		}
		log := b.Log()
		newPart := log[min(s.logScanned[i], len(log)):]
		s.logScanned[i] = len(log)
		for _, line := range strings.Split(newPart, "\n") {
			if strings.HasPrefix(line, cluster.MarkerPrefix) {
				continue
			}
			if l := strings.ToLower(line); strings.Contains(l, "panic") || strings.Contains(l, "fatal") {
				s.failf("broker %d logged: %s", b.ID(), line)
			}
		}
	}
}

// exitStatus says how a process's last run ended.
func exitStatus(p *cluster.Process) string {
	var ee *exec.ExitError
	if !errors.As(p.ExitErr(), &ee) {
		return "exit status 0"
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return ee.Error()
}

// killedBySIGKILL reports whether a process's last run ended by SIGKILL (and not, say, by a
// crash just before the kill).
func killedBySIGKILL(p *cluster.Process) bool {
	var ee *exec.ExitError
	if !errors.As(p.ExitErr(), &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// soakPoll is how often the settle waits read the brokers: often enough to time a recovery to
// a fraction of a second, rarely enough to leave the two cores to the brokers.
const soakPoll = 200 * time.Millisecond

// until polls cond until it returns nil and returns how long that took; the processes are
// checked on every try, and a cond still failing after limit fails the run with its last
// error.
func (s *soak) until(what string, limit time.Duration, cond func() error) time.Duration {
	start := time.Now()
	for {
		s.checkProcesses()
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			s.failf("%s: not after %v: %v", what, limit, err)
		}
		time.Sleep(soakPoll) // the interval of a poll, as in cluster.Poll
	}
}
