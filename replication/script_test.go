package replication

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtail/ringtail/internal/scripttest"
)

// scriptBase is time zero of the scripts: at=1.5s is scriptBase plus 1.5 s.
var scriptBase = time.Unix(1_700_000_000, 0)

// TestScripts runs the tracker scenarios in testdata/ with the shared runner
// (internal/scripttest: a command, "----", its output, a blank line; run with -rewrite to
// regenerate the outputs after a deliberate change, then read the diff). Commands:
//
//	new self=ID replicas=1,2,3 isr=1,2,3 [min-isr=N] [lag=DUR] [epoch-start=O] [hw=O]
//	    [partition-epoch=E] [leader-epoch=E] [at=DUR]
//	leader log-end=O durable=O [at=DUR]            LeaderProgress
//	follower id=ID log-end=O durable=O [at=DUR]    FollowerProgress
//	propose [at=DUR]                               Propose
//	failed [at=DUR]                                ProposalFailed
//	committed isr=1,2 epoch=E [at=DUR]             Committed
//	state [at=DUR]                                 hw, ISRs, pending, each follower
//
// Times are offsets from the script's time zero; a command without at= happens at the time
// of the one before. After every command the harness checks that the high watermark did not
// go down.
func TestScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		e := &scriptEnv{now: scriptBase}
		scripttest.Run(t, path, e.handle)
	})
}

type scriptEnv struct {
	tr  *Tracker
	now time.Time
}

func (e *scriptEnv) handle(t *testing.T, d *scripttest.TestData) string {
	if s, ok := d.Arg("at"); ok {
		at, err := time.ParseDuration(s)
		if err != nil {
			d.Fatalf(t, "at: %v", err)
		}
		e.now = scriptBase.Add(at)
	}
	if d.Cmd != "new" && e.tr == nil {
		d.Fatalf(t, "no tracker yet: start with new")
	}
	var before int64
	if e.tr != nil {
		before = e.tr.HighWatermark()
	}
	out := e.run(t, d)
	if e.tr.HighWatermark() < before && d.Cmd != "new" {
		d.Fatalf(t, "high watermark went down from %d to %d", before, e.tr.HighWatermark())
	}
	return out
}

func (e *scriptEnv) run(t *testing.T, d *scripttest.TestData) string {
	switch d.Cmd {
	case "new":
		cfg := Config{
			Self:           int32(intArg(t, d, "self", -1)),
			Replicas:       idsArg(t, d, "replicas"),
			ISR:            idsArg(t, d, "isr"),
			PartitionEpoch: int32(intArg(t, d, "partition-epoch", 0)),
			LeaderEpoch:    int32(intArg(t, d, "leader-epoch", 0)),
			EpochStart:     intArg(t, d, "epoch-start", 0),
			MinISR:         int(intArg(t, d, "min-isr", 1)),
			LagMax:         durArg(t, d, "lag"),
			HighWatermark:  intArg(t, d, "hw", 0),
		}
		e.tr = NewTracker(cfg, e.now)
		return e.state()
	case "leader":
		return hwMoved(e.tr.LeaderProgress(intArg(t, d, "log-end", -1), intArg(t, d, "durable", -1), e.now))
	case "follower":
		return hwMoved(e.tr.FollowerProgress(int32(intArg(t, d, "id", -1)), intArg(t, d, "log-end", -1), intArg(t, d, "durable", -1), e.now))
	case "propose":
		wasPending := e.tr.Pending()
		isr, epoch, ok := e.tr.Propose(e.now)
		switch {
		case ok:
			return fmt.Sprintf("propose isr=%s partition-epoch=%d", ids(isr), epoch)
		case wasPending:
			return "none: a proposal is pending"
		default:
			return "none: nothing due"
		}
	case "failed":
		before := e.tr.HighWatermark()
		e.tr.ProposalFailed(e.now)
		return fmt.Sprintf("hw=%d moved=%t pending=%t", e.tr.HighWatermark(), e.tr.HighWatermark() != before, e.tr.Pending())
	case "committed":
		return hwMoved(e.tr.Committed(idsArg(t, d, "isr"), int32(intArg(t, d, "epoch", -1)), e.now))
	case "state":
		return e.state()
	default:
		d.Fatalf(t, "unknown command")
		return ""
	}
}

// state prints the tracker's view: the high watermark, the ISRs, the leader's log and each
// follower's progress, with whether the Propose rules would count it caught up now.
func (e *scriptEnv) state() string {
	tr := e.tr
	var b strings.Builder
	pending := "none"
	if tr.Pending() {
		pending = ids(tr.PendingISR())
	}
	fmt.Fprintf(&b, "hw=%d isr=%s partition-epoch=%d pending=%s maximal=%s isr-big-enough=%t\n",
		tr.HighWatermark(), ids(tr.ISR()), tr.PartitionEpoch(), pending, ids(tr.MaximalISR()), tr.ISRBigEnough())
	if tr.leaderKnown {
		fmt.Fprintf(&b, "leader %d: log-end=%d durable=%d\n", tr.self, tr.leaderLogEnd, tr.leaderDurableEnd)
	} else {
		fmt.Fprintf(&b, "leader %d: not reported (log-end>=%d)\n", tr.self, tr.leaderLogEnd)
	}
	for _, id := range tr.members {
		if id == tr.self {
			continue
		}
		progress := "not heard from"
		if logEnd, durable, ok := tr.Follower(id); ok {
			progress = fmt.Sprintf("log-end=%d durable=%d", logEnd, durable)
		}
		caughtUp := "never"
		if at := tr.LastCaughtUp(id); !at.IsZero() {
			caughtUp = at.Sub(scriptBase).String()
		}
		fmt.Fprintf(&b, "follower %d: %s caught-up=%s in-sync-now=%t\n", id, progress, caughtUp, tr.caughtUp(id, e.now))
	}
	return b.String()
}

func hwMoved(hw int64, moved bool) string { return fmt.Sprintf("hw=%d moved=%t", hw, moved) }

func ids(l []int32) string {
	s := make([]string, len(l))
	for i, id := range l {
		s[i] = strconv.Itoa(int(id))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func intArg(t *testing.T, d *scripttest.TestData, key string, def int64) int64 {
	s, ok := d.Arg(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return n
}

func durArg(t *testing.T, d *scripttest.TestData, key string) time.Duration {
	s, ok := d.Arg(key)
	if !ok {
		return 0
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return v
}

// idsArg parses "1,2,3"; an empty value is the empty list.
func idsArg(t *testing.T, d *scripttest.TestData, key string) []int32 {
	s, _ := d.Arg(key)
	var out []int32
	for _, w := range strings.Split(s, ",") {
		if w == "" {
			continue
		}
		n, err := strconv.Atoi(w)
		if err != nil {
			d.Fatalf(t, "%s: %v", key, err)
		}
		out = append(out, int32(n))
	}
	return out
}

// TestTrackerInvariants drives trackers with random, often invalid, input and checks after
// every call what the scripts show case by case: the high watermark never goes down, never
// passes the leader's durable end, and whenever it moves every member of the maximal ISR has
// it durably and the committed ISR has at least MinISR members.
func TestTrackerInvariants(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		replicas := []int32{1, 2, 3}
		now := scriptBase
		tr := NewTracker(Config{
			Self: 1, Replicas: replicas, ISR: replicas[:1+rng.IntN(3)],
			MinISR: 1 + rng.IntN(3), LagMax: time.Second, EpochStart: int64(rng.IntN(5)),
		}, now)
		var leaderEnd, epoch int64
		for step := 0; step < 300; step++ {
			now = now.Add(time.Duration(rng.IntN(400)) * time.Millisecond)
			before := tr.HighWatermark()
			moved := false
			switch rng.IntN(6) {
			case 0:
				leaderEnd += int64(rng.IntN(4))
				_, moved = tr.LeaderProgress(leaderEnd, leaderEnd-int64(rng.IntN(3)), now)
			case 1, 2:
				end := leaderEnd - int64(rng.IntN(6))
				_, moved = tr.FollowerProgress(int32(rng.IntN(5)), end, end-int64(rng.IntN(3)), now)
			case 3:
				if isr, pe, ok := tr.Propose(now); ok && rng.IntN(2) == 0 {
					if pe != tr.PartitionEpoch() || !slices.Contains(isr, 1) {
						t.Fatalf("seed %d: proposal %v at epoch %d, committed epoch %d", seed, isr, pe, tr.PartitionEpoch())
					}
					epoch++
					_, moved = tr.Committed(isr, int32(epoch), now)
				}
			case 4:
				tr.ProposalFailed(now)
				moved = tr.HighWatermark() != before
			case 5:
				if rng.IntN(4) == 0 { // the controller removes a broker
					isr := slices.DeleteFunc(tr.ISR(), func(id int32) bool { return id != 1 && rng.IntN(2) == 0 })
					epoch++
					_, moved = tr.Committed(isr, int32(epoch), now)
				}
			}
			hw := tr.HighWatermark()
			if hw < before || moved != (hw != before) {
				t.Fatalf("seed %d step %d: hw %d -> %d, moved=%t", seed, step, before, hw, moved)
			}
			if tr.leaderKnown && hw > max(tr.leaderDurableEnd, 0) {
				t.Fatalf("seed %d step %d: hw %d past the leader's durable end %d", seed, step, hw, tr.leaderDurableEnd)
			}
			if !moved {
				continue
			}
			if !tr.ISRBigEnough() {
				t.Fatalf("seed %d step %d: hw moved with ISR %v below min ISR %d", seed, step, tr.ISR(), tr.minISR)
			}
			for _, id := range tr.MaximalISR() {
				if _, durable, ok := tr.Follower(id); id != 1 && (!ok || durable < hw) {
					t.Fatalf("seed %d step %d: hw %d but member %d has durable=%d known=%t", seed, step, hw, id, durable, ok)
				}
			}
		}
	}
}
