package group

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/internal/scripttest"
)

// TestScripts runs the scenario files in testdata/ with the shared runner
// (internal/scripttest: a command, "----", its output, a blank line; run
// with -rewrite to regenerate the outputs after a deliberate change, then
// read the diff). Commands:
//
//	join GROUP [member=ID] [v=N] [inst=X] [session=DUR] [rebal=DUR] [protos=a,b]
//	sync GROUP member=ID gen=N [assign=ID:val,...]
//	heartbeat GROUP member=ID gen=N [inst=X]
//	leave GROUP member=ID [inst=X]
//	commit GROUP [member=ID] [gen=N] TOPIC/PART=OFFSET
//	fetch GROUP TOPIC/PART [stable]
//	tick DUR       advance the clock and Tick
//	persist        persist every held batch (successfully)
//	fail           fail the oldest held batch
//	state GROUP
//
// Member ids are minted as "cli-0-N" in order, so scripts can name them.
func TestScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		h := newHarness(t, Config{})
		h.manual = true
		scripttest.Run(t, path, func(t *testing.T, d *scripttest.TestData) string { return scriptCommand(t, h, d) })
	})
}

func scriptCommand(t *testing.T, h *harness, d *scripttest.TestData) string {
	args := map[string]string{}
	var pos []string
	for _, a := range d.CmdArgs {
		// A word such as "t/0=5" names a partition and an offset, not an argument.
		if a.HasVal && !strings.Contains(a.Key, "/") {
			args[a.Key] = a.Val
		} else {
			pos = append(pos, a.String())
		}
	}
	dur := func(k string) time.Duration {
		if args[k] == "" {
			return 0
		}
		v, err := time.ParseDuration(args[k])
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		return v
	}
	num := func(k string) int32 {
		n, _ := strconv.Atoi(args[k])
		return int32(n)
	}
	var inst *string
	if args["inst"] != "" {
		inst = strp(args["inst"])
	}
	before := h.next
	heldBefore := len(h.held)
	switch d.Cmd {
	case "join":
		v, _ := strconv.Atoi(args["v"])
		o := joinOpt{version: int16(v), instance: args["inst"], session: dur("session"), rebal: dur("rebal")}
		if args["protos"] != "" {
			o.protos = strings.Split(args["protos"], ",")
		}
		h.join(pos[0], args["member"], o)
	case "sync":
		assign := map[string]string{}
		if args["assign"] != "" {
			for _, a := range strings.Split(args["assign"], ",") {
				k, v, _ := strings.Cut(a, ":")
				assign[k] = v
			}
		}
		h.sync(pos[0], args["member"], num("gen"), assign)
	case "heartbeat":
		h.heartbeat(pos[0], args["member"], num("gen"), args["inst"])
	case "leave":
		h.leave(pos[0], kmsg.LeaveGroupRequestMember{MemberID: args["member"], InstanceID: inst})
	case "commit":
		tp, off, _ := strings.Cut(pos[1], "=")
		topic, part, _ := strings.Cut(tp, "/")
		p, _ := strconv.Atoi(part)
		o, _ := strconv.ParseInt(off, 10, 64)
		gen := int32(-1)
		if args["gen"] != "" {
			gen = num("gen")
		}
		h.commit(pos[0], args["member"], gen, topic, int32(p), o)
	case "fetch":
		topic, part, _ := strings.Cut(pos[1], "/")
		p, _ := strconv.Atoi(part)
		off, code := h.fetch(pos[0], topic, int32(p), len(pos) > 2 && pos[2] == "stable")
		h.printed(h.next) // shown here, not by the generic listing
		return fmt.Sprintf("#%d offset=%d %s", h.next, off, errName(code))
	case "tick":
		d, _ := time.ParseDuration(pos[0])
		h.advance(d)
	case "persist":
		h.persistAll()
	case "fail":
		r := h.held[0]
		h.held = h.held[1:]
		h.take(h.c.Persisted(h.now, r.Batch, fmt.Errorf("injected")))
	case "state":
		g := h.c.groups[pos[0]]
		if g == nil {
			return "Dead"
		}
		var ms []string
		for _, m := range g.order {
			ms = append(ms, m.id)
		}
		return fmt.Sprintf("%v gen=%d leader=%q protocol=%q members=%v", g.state, g.generation, g.leader, g.protocol, ms)
	default:
		d.Fatalf(t, "unknown command")
	}
	var b strings.Builder
	for r := ReplyID(1); r <= h.next; r++ {
		resp, ok := h.resps[r]
		if !ok || h.printed(r) {
			continue
		}
		b.WriteString(formatResponse(r, resp, r > before) + "\n")
	}
	for _, r := range h.held[min(heldBefore, len(h.held)):] {
		fmt.Fprintf(&b, "persist batch %d: %d record(s)\n", r.Batch, len(r.Records))
	}
	if b.Len() == 0 {
		return "ok"
	}
	return strings.TrimRight(b.String(), "\n")
}

// printed marks a reply as shown once in script output.
func (h *harness) printed(r ReplyID) bool {
	if h.shown == nil {
		h.shown = map[ReplyID]bool{}
	}
	if h.shown[r] {
		return true
	}
	h.shown[r] = true
	return false
}

func formatResponse(r ReplyID, resp kmsg.Response, fresh bool) string {
	tag := fmt.Sprintf("#%d", r)
	if !fresh {
		tag += " (parked)"
	}
	switch resp := resp.(type) {
	case *kmsg.JoinGroupResponse:
		s := fmt.Sprintf("%s join %s member=%s", tag, errName(resp.ErrorCode), resp.MemberID)
		if resp.ErrorCode == 0 {
			var ms []string
			for _, m := range resp.Members {
				ms = append(ms, m.MemberID)
			}
			s += fmt.Sprintf(" gen=%d leader=%s protocol=%s members=%v", resp.Generation, resp.LeaderID, *resp.Protocol, ms)
			if resp.SkipAssignment {
				s += " skip-assignment"
			}
		}
		return s
	case *kmsg.SyncGroupResponse:
		if resp.ErrorCode != 0 {
			return fmt.Sprintf("%s sync %s", tag, errName(resp.ErrorCode))
		}
		return fmt.Sprintf("%s sync NONE assignment=%q", tag, resp.MemberAssignment)
	case *kmsg.HeartbeatResponse:
		return fmt.Sprintf("%s heartbeat %s", tag, errName(resp.ErrorCode))
	case *kmsg.LeaveGroupResponse:
		var codes []string
		for _, m := range resp.Members {
			codes = append(codes, errName(m.ErrorCode))
		}
		return fmt.Sprintf("%s leave %s %v", tag, errName(resp.ErrorCode), codes)
	case *kmsg.OffsetCommitResponse:
		return fmt.Sprintf("%s commit %s", tag, errName(resp.Topics[0].Partitions[0].ErrorCode))
	}
	return fmt.Sprintf("%s %T", tag, resp)
}
