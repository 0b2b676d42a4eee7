package fetchsession

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtail/ringtail/internal/scripttest"
)

// scriptBase is time zero of the scripts: at=1.5s is scriptBase plus 1.5 s.
var scriptBase = time.Unix(1_700_000_000, 0)

// TestScripts runs the session scenarios in testdata/ (internal/scripttest; -rewrite
// regenerates the outputs). Commands:
//
//	new [slots=N] [evict=DUR]          a cache (default 1000 slots, 120 s); session ids 1, 2, …
//	log t-0 hw=O [lso=O] [start=O]     the state of a partition the fetches read
//	fetch [session=N] [epoch=E] [ids] [privileged] [at=DUR]
//	  t-0 offset=O                     a partition the request lists (added or changed)
//	  forget t-0                       a partition it forgets
//	stats                              sessions, partitions and evictions of the cache
//
// A fetch reads hw-offset bytes from each partition it reads (none at or past hw; a partition
// without a log line answers with an error) and prints the mode, the error, what was read,
// the session id answered and the partitions the answer carries. Times are offsets from the
// script's time zero; a command without at= happens at the time of the one before.
func TestScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/*.txt", func(t *testing.T, path string) {
		e := &scriptEnv{now: scriptBase, logs: map[string]Result{}}
		scripttest.Run(t, path, e.handle)
	})
}

type scriptEnv struct {
	c    *Cache
	now  time.Time
	logs map[string]Result
}

func (e *scriptEnv) handle(t *testing.T, d *scripttest.TestData) string {
	if s, ok := d.Arg("at"); ok {
		at, err := time.ParseDuration(s)
		if err != nil {
			d.Fatalf(t, "at: %v", err)
		}
		e.now = scriptBase.Add(at)
	}
	switch d.Cmd {
	case "new":
		next := int32(0)
		e.c = NewCache(int(intArg(t, d, "slots", DefaultMaxEntries)), durArg(t, d, "evict", DefaultEvictionAge),
			func() int32 { next++; return next })
		return "ok"
	case "log":
		if len(d.CmdArgs) == 0 {
			d.Fatalf(t, "log needs a partition")
		}
		hw := intArg(t, d, "hw", 0)
		e.logs[d.CmdArgs[0].Key] = Result{HighWatermark: hw, LastStableOffset: intArg(t, d, "lso", hw),
			LogStartOffset: intArg(t, d, "start", 0)}
		return "ok"
	case "stats":
		s := e.c.Stats()
		return fmt.Sprintf("sessions=%d partitions=%d evictions=%d", s.Sessions, s.Partitions, s.Evictions)
	case "fetch":
		return e.fetch(t, d)
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return ""
}

func (e *scriptEnv) fetch(t *testing.T, d *scripttest.TestData) string {
	_, ids := d.Arg("ids")
	_, privileged := d.Arg("privileged")
	req := Request{SessionID: int32(intArg(t, d, "session", 0)), Epoch: int32(intArg(t, d, "epoch", -1)),
		UsesTopicIDs: ids, Privileged: privileged}
	for _, line := range strings.Split(d.Input, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "forget" && len(f) == 2:
			req.Forgotten = append(req.Forgotten, key(t, d, f[1], ids))
		case len(f) == 2 && strings.HasPrefix(f[1], "offset="):
			off, err := strconv.ParseInt(strings.TrimPrefix(f[1], "offset="), 10, 64)
			if err != nil {
				d.Fatalf(t, "%s: %v", line, err)
			}
			req.Partitions = append(req.Partitions, PartitionFetch{Key: key(t, d, f[0], ids),
				Fetch: Fetch{Offset: off, MaxBytes: 1 << 20, CurrentLeaderEpoch: -1, LastFetchedEpoch: -1, LogStartOffset: -1}})
		default:
			d.Fatalf(t, "bad input line %q", line)
		}
	}
	ctx := e.c.Begin(req, e.now)
	var b strings.Builder
	fmt.Fprintf(&b, "mode=%s", [...]string{"sessionless", "full", "incremental", "failed"}[ctx.Mode])
	if ctx.Err != nil {
		fmt.Fprintf(&b, " err=%s", strings.TrimPrefix(ctx.Err.Error(), "fetchsession: "))
	}
	if ctx.Mode == Incremental {
		fmt.Fprintf(&b, " added=%d updated=%d removed=%d", ctx.Added, ctx.Updated, ctx.Removed)
	}
	results := make([]Result, len(ctx.Partitions))
	var read []string
	for i, p := range ctx.Partitions {
		name := keyName(p.Key)
		r, ok := e.logs[strings.TrimPrefix(name, "#")]
		if !ok {
			r = Result{HighWatermark: -1, LastStableOffset: -1, LogStartOffset: -1, Error: true}
		} else if p.Offset < r.HighWatermark {
			r.RecordBytes = int(r.HighWatermark - p.Offset)
		}
		results[i] = r
		read = append(read, fmt.Sprintf("%s@%d", name, p.Offset))
	}
	id, include := e.c.Finish(ctx, results, e.now)
	var answered []string
	for i, p := range ctx.Partitions {
		if include[i] {
			r := results[i]
			s := fmt.Sprintf("%s(bytes=%d hw=%d)", keyName(p.Key), r.RecordBytes, r.HighWatermark)
			if r.Error {
				s = keyName(p.Key) + "(error)"
			}
			answered = append(answered, s)
		}
	}
	fmt.Fprintf(&b, "\nread: %s\nanswer: session=%d %s", list(read), id, list(answered))
	return b.String()
}

func list(s []string) string {
	if len(s) == 0 {
		return "[]"
	}
	return "[" + strings.Join(s, " ") + "]"
}

// key parses "t-0"; with ids the topic is named by an id made from its name.
func key(t *testing.T, d *scripttest.TestData, s string, ids bool) Key {
	i := strings.LastIndexByte(s, '-')
	p, err := strconv.Atoi(s[i+1:])
	if i < 0 || err != nil {
		d.Fatalf(t, "bad partition %q", s)
	}
	k := Key{Topic: s[:i], Partition: int32(p)}
	if ids {
		copy(k.TopicID[:], k.Topic)
		k.Topic = ""
	}
	return k
}

func keyName(k Key) string {
	if k.Topic != "" {
		return fmt.Sprintf("%s-%d", k.Topic, k.Partition)
	}
	return fmt.Sprintf("#%s-%d", strings.TrimRight(string(k.TopicID[:]), "\x00"), k.Partition)
}

func intArg(t *testing.T, d *scripttest.TestData, name string, def int64) int64 {
	s, ok := d.Arg(name)
	if !ok {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		d.Fatalf(t, "%s: %v", name, err)
	}
	return v
}

func durArg(t *testing.T, d *scripttest.TestData, name string, def time.Duration) time.Duration {
	s, ok := d.Arg(name)
	if !ok {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Fatalf(t, "%s: %v", name, err)
	}
	return v
}

// TestEpochWraps: after the largest epoch comes 1, never 0 or a negative one.
func TestEpochWraps(t *testing.T) {
	for _, c := range []struct{ in, want int32 }{{0, 1}, {1, 2}, {1<<31 - 1, 1}, {-1, -1}, {-5, -1}} {
		if got := nextEpoch(c.in); got != c.want {
			t.Errorf("nextEpoch(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestStatsCountPartitions: the partition count follows sessions as they grow, shrink and go.
func TestStatsCountPartitions(t *testing.T) {
	next := int32(0)
	c := NewCache(10, time.Minute, func() int32 { next++; return next })
	full := func(n int) int32 {
		var req Request
		for i := 0; i < n; i++ {
			req.Partitions = append(req.Partitions, PartitionFetch{Key: Key{Topic: "t", Partition: int32(i)}})
		}
		req.Epoch = InitialEpoch
		ctx := c.Begin(req, scriptBase)
		id, _ := c.Finish(ctx, make([]Result, len(ctx.Partitions)), scriptBase)
		return id
	}
	a, b := full(3), full(5)
	if s := c.Stats(); s.Sessions != 2 || s.Partitions != 8 {
		t.Fatalf("stats %+v, want 2 sessions, 8 partitions", s)
	}
	ctx := c.Begin(Request{SessionID: a, Epoch: 1, Forgotten: []Key{{Topic: "t", Partition: 0}}}, scriptBase)
	c.Finish(ctx, make([]Result, len(ctx.Partitions)), scriptBase)
	if s := c.Stats(); s.Partitions != 7 {
		t.Fatalf("stats %+v after forgetting one, want 7 partitions", s)
	}
	c.Begin(Request{SessionID: b, Epoch: FinalEpoch}, scriptBase)
	if s := c.Stats(); s.Sessions != 1 || s.Partitions != 2 {
		t.Fatalf("stats %+v after closing one, want 1 session, 2 partitions", s)
	}
	keys := []string{}
	for k := range c.sessions {
		keys = append(keys, fmt.Sprint(k))
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != fmt.Sprint(a) {
		t.Fatalf("sessions %v, want %d", keys, a)
	}
}
