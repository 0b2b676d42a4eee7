package group

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/internal/scripttest"
)

// catalog is the topic list a coordinator is handed (pure input, like the time).
type catalog map[string]int32

func topicID(name string) (id [16]byte) {
	copy(id[:], name)
	return id
}

func (c catalog) TopicByName(name string) ([16]byte, int32, bool) {
	n, ok := c[name]
	return topicID(name), n, ok
}

func (c catalog) TopicNames() []string { return sortedKeys(c) }

// consumerHarness drives the consumer protocol of one coordinator with time passed in.
type consumerHarness struct {
	t      *testing.T
	cfg    Config // what restart configures the fresh coordinator with
	c      *Coordinator
	topics catalog
	now    time.Time
	reply  ReplyID
	log    []Record // everything persisted, in order
}

// take persists a Ready's records at once (successfully) and returns every response.
func (h *consumerHarness) take(r Ready) []Output {
	out := r.Send
	for len(r.Records) > 0 {
		h.log = append(h.log, r.Records...)
		r = h.c.Persisted(h.now, r.Batch, nil)
		out = append(out, r.Send...)
	}
	return out
}

// restart replays the log into a fresh coordinator, as a new coordinator (a restart or a
// failover) does.
func (h *consumerHarness) restart() {
	h.t.Helper()
	h.c = New(h.cfg)
	if err := h.c.Replay(h.now, h.log); err != nil {
		h.t.Fatalf("replay: %v", err)
	}
}

// consumerState renders every consumer group, for comparing a live coordinator with a replayed
// one.
func consumerState(c *Coordinator) string {
	var b strings.Builder
	for _, name := range sortedKeys(c.cgroups) {
		g := c.cgroups[name]
		fmt.Fprintf(&b, "group %s epoch=%d target-epoch=%d\n", name, g.epoch, g.targetEpoch)
		for _, id := range sortedKeys(g.members) {
			m := g.members[id]
			var since []string
			for _, tp := range tpList(m.assigned) {
				topic, p, _ := strings.Cut(tp, "/")
				n, _ := strconv.Atoi(p)
				since = append(since, fmt.Sprint(m.since[topicPartition{topic, int32(n)}]))
			}
			fmt.Fprintf(&b, " %s epoch=%d prev=%d left=%v topics=%v regex=%s assignor=%q assigned=%v since=%v revoking=%v target=%v\n",
				id, m.epoch, m.prevEpoch, m.staticLeft, m.topics, regexSource(m.regex), m.assignor, tpList(m.assigned), since, tpList(m.revoking), tpList(g.target[id]))
		}
	}
	return b.String()
}

func newConsumerHarness(t *testing.T) *consumerHarness {
	topics := catalog{}
	cfg := Config{ConsumerTopics: topics}
	return &consumerHarness{t: t, cfg: cfg, topics: topics, now: t0, c: New(cfg)}
}

type hbOpt struct {
	topics, owned     []string // owned: "t/0"; nil owned: not said
	regex, assignor   *string
	inst              *string
	rebal             time.Duration
	version           int16
	ownedSaid, noSubs bool
}

func (h *consumerHarness) heartbeat(group, member string, epoch int32, o hbOpt) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, group, member, epoch
	if o.version != 0 {
		req.Version = o.version
	}
	req.InstanceID, req.SubscribedTopicRegex, req.ServerAssignor = o.inst, o.regex, o.assignor
	req.RebalanceTimeoutMillis = -1
	if o.rebal != 0 {
		req.RebalanceTimeoutMillis = int32(o.rebal / time.Millisecond)
	}
	if o.topics != nil {
		req.SubscribedTopicNames = o.topics
	}
	if o.ownedSaid {
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		byTopic := map[string][]int32{}
		for _, tp := range o.owned {
			topic, p, _ := strings.Cut(tp, "/")
			n, _ := strconv.Atoi(p)
			byTopic[topic] = append(byTopic[topic], int32(n))
		}
		for _, topic := range sortedKeys(byTopic) {
			req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: topicID(topic), Partitions: byTopic[topic]})
		}
	}
	h.reply++
	r, ok := h.c.Handle(h.now, h.reply, Client{ID: "cli", Host: "/127.0.0.1"}, req)
	if !ok || len(r.Send) != 0 && len(r.Records) != 0 {
		h.t.Fatalf("heartbeat: handled %v, answered before its %d records were durable", ok, len(r.Records))
	}
	out := h.take(r)
	if len(out) != 1 || out[0].Reply != h.reply {
		h.t.Fatalf("heartbeat: %d responses", len(out))
	}
	return out[0].Response.(*kmsg.ConsumerGroupHeartbeatResponse)
}

// assigned lists a response's partitions as "t/0".
func (h *consumerHarness) assigned(resp *kmsg.ConsumerGroupHeartbeatResponse) []string {
	var out []string
	if resp.Assignment == nil {
		return nil
	}
	for _, t := range resp.Assignment.Topics {
		name := strings.TrimRight(string(t.TopicID[:]), "\x00")
		for _, p := range t.Partitions {
			out = append(out, fmt.Sprintf("%s/%d", name, p))
		}
	}
	return out
}

func tpList(set map[topicPartition]bool) []string {
	var out []string
	for tp := range set {
		out = append(out, fmt.Sprintf("%s/%d", tp.topic, tp.partition))
	}
	slices.Sort(out)
	return out
}

// TestConsumerScripts runs testdata/consumer/*.txt. Commands:
//
//	config [max-size=N] [assignors=a,b] [session=DUR] [heartbeat=DUR]
//	                                 a fresh coordinator with these group.consumer.* settings
//	topic NAME PARTITIONS            create or grow a topic
//	hb GROUP member=ID epoch=N [topics=a,b] [regex=RE] [owned=t/0,t/1|owned=] [assignor=A] [rebal=DUR] [inst=X] [v=N]
//	tick DUR                         advance the clock and Tick
//	state GROUP                      group epoch, target epoch, members
//	join-classic GROUP               a classic JoinGroup on the id
//	restart                          replay the log into a fresh coordinator (same state)
//	commit GROUP member=ID epoch=N t/0=OFFSET    OffsetCommit v9
//	fetch GROUP member=ID epoch=N t/0            OffsetFetch v9
//	delete GROUP                     DeleteGroups
func TestConsumerScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/consumer/*.txt", func(t *testing.T, path string) {
		h := newConsumerHarness(t)
		scripttest.Run(t, path, func(t *testing.T, d *scripttest.TestData) string {
			args := map[string]string{}
			has := map[string]bool{}
			var pos []string
			for _, a := range d.CmdArgs {
				// A word such as "t/0=5" names a partition and an offset, not an argument.
				if a.HasVal && !strings.Contains(a.Key, "/") {
					args[a.Key], has[a.Key] = a.Val, true
				} else {
					pos = append(pos, a.String())
				}
			}
			switch d.Cmd {
			case "config":
				cfg := Config{ConsumerTopics: h.topics}
				cfg.ConsumerMaxSize, _ = strconv.Atoi(args["max-size"])
				if has["assignors"] {
					cfg.ConsumerAssignors = strings.Split(args["assignors"], ",")
				}
				cfg.ConsumerSessionTimeout, _ = time.ParseDuration(args["session"])
				cfg.ConsumerHeartbeatInterval, _ = time.ParseDuration(args["heartbeat"])
				h.cfg, h.c, h.log = cfg, New(cfg), nil
				return "ok"
			case "topic":
				n, _ := strconv.Atoi(pos[1])
				h.topics[pos[0]] = int32(n)
				return "ok"
			case "hb":
				var o hbOpt
				if has["topics"] {
					o.topics = []string{}
					if args["topics"] != "" {
						o.topics = strings.Split(args["topics"], ",")
					}
				}
				if has["owned"] {
					o.ownedSaid = true
					if args["owned"] != "" {
						o.owned = strings.Split(args["owned"], ",")
					}
				}
				if has["regex"] {
					o.regex = strp(args["regex"])
				}
				if has["assignor"] {
					o.assignor = strp(args["assignor"])
				}
				if has["inst"] {
					o.inst = strp(args["inst"])
				}
				if has["rebal"] {
					v, _ := time.ParseDuration(args["rebal"])
					o.rebal = v
				}
				if has["v"] {
					v, _ := strconv.Atoi(args["v"])
					o.version = int16(v)
				}
				epoch, _ := strconv.Atoi(args["epoch"])
				resp := h.heartbeat(pos[0], args["member"], int32(epoch), o)
				if resp.ErrorCode != 0 {
					return errName(resp.ErrorCode)
				}
				id := ""
				if resp.MemberID != nil {
					id = *resp.MemberID
				}
				out := fmt.Sprintf("member=%s epoch=%d assigned=%v", id, resp.MemberEpoch, h.assigned(resp))
				if h.cfg.ConsumerHeartbeatInterval != 0 { // configured: the scripts that set it show it
					out += fmt.Sprintf(" interval=%dms", resp.HeartbeatIntervalMillis)
				}
				return out
			case "tick":
				d, _ := time.ParseDuration(pos[0])
				h.now = h.now.Add(d)
				h.take(h.c.Tick(h.now))
				return "ok"
			case "restart":
				before := consumerState(h.c)
				h.restart()
				if after := consumerState(h.c); after != before {
					d.Fatalf(t, "replayed state differs\nlive:\n%s\nreplayed:\n%s", before, after)
				}
				return "ok"
			case "state":
				g := h.c.cgroups[pos[0]]
				if g == nil {
					return "none"
				}
				var b strings.Builder
				fmt.Fprintf(&b, "epoch=%d target-epoch=%d assignor=%s", g.epoch, g.targetEpoch, g.assignor(h.c.cfg.ConsumerAssignors))
				for _, id := range sortedKeys(g.members) {
					m := g.members[id]
					fmt.Fprintf(&b, "\n%s epoch=%d assigned=%v revoking=%v target=%v", id, m.epoch, tpList(m.assigned), tpList(m.revoking), tpList(g.target[id]))
					if m.staticLeft {
						b.WriteString(" left")
					}
				}
				return b.String()
			case "commit", "fetch":
				epoch, _ := strconv.Atoi(args["epoch"])
				tp, off, _ := strings.Cut(pos[1], "=")
				topic, part, _ := strings.Cut(tp, "/")
				n, _ := strconv.Atoi(part)
				h.reply++
				var r Ready
				if d.Cmd == "commit" {
					req := kmsg.NewPtrOffsetCommitRequest()
					req.Version, req.Group, req.MemberID, req.Generation = 9, pos[0], args["member"], int32(epoch)
					o, _ := strconv.ParseInt(off, 10, 64)
					req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: int32(n), Offset: o, LeaderEpoch: -1}}}}
					r = h.c.OffsetCommit(h.now, h.reply, req)
				} else {
					req := kmsg.NewPtrOffsetFetchRequest()
					req.Version = 9
					rg := kmsg.NewOffsetFetchRequestGroup()
					rg.Group, rg.MemberID, rg.MemberEpoch = pos[0], strp(args["member"]), int32(epoch)
					rg.Topics = []kmsg.OffsetFetchRequestGroupTopic{{Topic: topic, Partitions: []int32{int32(n)}}}
					req.Groups = append(req.Groups, rg)
					r = h.c.OffsetFetch(h.now, h.reply, req)
				}
				out := h.take(r)
				switch resp := out[0].Response.(type) {
				case *kmsg.OffsetCommitResponse:
					return errName(resp.Topics[0].Partitions[0].ErrorCode)
				case *kmsg.OffsetFetchResponse:
					g := resp.Groups[0]
					if g.ErrorCode != 0 {
						return errName(g.ErrorCode)
					}
					return fmt.Sprintf("offset=%d", g.Topics[0].Partitions[0].Offset)
				}
				return "?"
			case "delete":
				req := kmsg.NewPtrDeleteGroupsRequest()
				req.Version, req.Groups = 2, []string{pos[0]}
				h.reply++
				out := h.take(h.c.DeleteGroups(h.now, h.reply, req))
				return errName(out[0].Response.(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode)
			case "join-classic":
				req := kmsg.NewPtrJoinGroupRequest()
				req.Version, req.Group, req.ProtocolType = 5, pos[0], "consumer"
				req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 10000, 10000
				req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: consumerMeta([]string{"t"})}}
				h.reply++
				out := h.take(h.c.JoinGroup(h.now, h.reply, Client{ID: "cli"}, req))
				return errName(out[0].Response.(*kmsg.JoinGroupResponse).ErrorCode)
			}
			d.Fatalf(t, "unknown command")
			return ""
		})
	})
}

// TestConsumerNeverTwoOwners drives random members (joining, leaving, crashing, acknowledging
// revocations late or never, topics growing, the coordinator replaced by one replaying its
// records, which must have the same state) and checks after every step that no partition is
// held by two members, and, once everyone heartbeats and acknowledges, that every subscribed
// partition has exactly one owner and every member reached the target epoch.
func TestConsumerNeverTwoOwners(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 3))
		h := newConsumerHarness(t)
		h.topics["a"], h.topics["b"] = 4, 3
		type client struct {
			id    string
			epoch int32
			owned []string
		}
		clients := map[string]*client{}
		next := 0
		beat := func(cl *client, ack bool) {
			o := hbOpt{ownedSaid: true, owned: cl.owned}
			if cl.epoch == 0 {
				o.topics, o.rebal = []string{"a", "b"}, 10*time.Second
				if rng.IntN(2) == 0 {
					o.assignor = strp(AssignorRange)
				}
			}
			resp := h.heartbeat("g", cl.id, cl.epoch, o)
			switch resp.ErrorCode {
			case 0:
				cl.epoch = resp.MemberEpoch
				if ack {
					cl.owned = h.assigned(resp)
				} else {
					// Keeps what it had and takes the new ones: a slow revocation.
					for _, tp := range h.assigned(resp) {
						if !slices.Contains(cl.owned, tp) {
							cl.owned = append(cl.owned, tp)
						}
					}
				}
			case kerr.FencedMemberEpoch.Code, kerr.UnknownMemberID.Code:
				cl.epoch, cl.owned = 0, nil
			default:
				t.Fatalf("seed %d: heartbeat: %s", seed, errName(resp.ErrorCode))
			}
		}
		check := func(step int) {
			g := h.c.cgroups["g"]
			if g == nil {
				return
			}
			held := map[topicPartition]string{}
			for id, m := range g.members {
				for _, set := range []map[topicPartition]bool{m.assigned, m.revoking} {
					for tp := range set {
						if other, ok := held[tp]; ok {
							t.Fatalf("seed %d step %d: %v held by %s and %s", seed, step, tp, other, id)
						}
						held[tp] = id
					}
				}
			}
		}
		for step := 0; step < 400; step++ {
			switch op := rng.IntN(100); {
			case op < 15 && len(clients) < 5:
				next++
				cl := &client{id: fmt.Sprintf("m%d", next)}
				clients[cl.id] = cl
				beat(cl, true)
			case op < 70 && len(clients) > 0:
				ids := sortedKeys(clients)
				beat(clients[ids[rng.IntN(len(ids))]], rng.IntN(4) != 0)
			case op < 75 && len(clients) > 0: // leaves
				ids := sortedKeys(clients)
				cl := clients[ids[rng.IntN(len(ids))]]
				h.heartbeat("g", cl.id, -1, hbOpt{})
				delete(clients, cl.id)
			case op < 80 && len(clients) > 0: // crashes: never heard from again
				ids := sortedKeys(clients)
				delete(clients, ids[rng.IntN(len(ids))])
			case op < 82:
				h.topics["a"]++
			case op < 85:
				before := consumerState(h.c)
				h.restart()
				if after := consumerState(h.c); after != before {
					t.Fatalf("seed %d step %d: replayed state differs\nlive:\n%s\nreplayed:\n%s", seed, step, before, after)
				}
			default:
				h.now = h.now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
				h.take(h.c.Tick(h.now))
			}
			check(step)
		}
		// Quiesce: everyone heartbeats and acknowledges until nothing changes.
		h.now = h.now.Add(time.Minute)
		h.take(h.c.Tick(h.now)) // the crashed ones' sessions end
		for range 10 {
			for _, id := range sortedKeys(clients) {
				beat(clients[id], true)
				check(-1)
			}
		}
		g := h.c.cgroups["g"]
		if g == nil || len(clients) == 0 {
			continue
		}
		total := 0
		for _, m := range g.members {
			if m.epoch != g.targetEpoch || len(m.revoking) > 0 || m.unreleased > 0 {
				t.Fatalf("seed %d: member %s at epoch %d (target %d), %d revoking, %d unreleased", seed, m.id, m.epoch, g.targetEpoch, len(m.revoking), m.unreleased)
			}
			total += len(m.assigned)
		}
		if want := int(h.topics["a"] + h.topics["b"]); total != want || len(g.members) != len(clients) {
			t.Fatalf("seed %d: %d partitions owned of %d, %d members for %d clients", seed, total, want, len(g.members), len(clients))
		}
	}
}
