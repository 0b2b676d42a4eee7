package meta

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestCreateDeleteSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	created, err := s.CreateTopic("orders", 3, map[string]string{"max.message.bytes": "2000000"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTopic("orders", 1, nil, false); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate create: got %v, want ErrTopicExists", err)
	}
	if _, err := s.CreateTopic("gone", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	clusterID := s.ClusterID()

	s.Close()
	s2 := openStore(t, dir)
	if s2.ClusterID() != clusterID {
		t.Fatalf("cluster id changed across reopen: %q -> %q", clusterID, s2.ClusterID())
	}
	topics := s2.Topics()
	if len(topics) != 1 || topics[0].Name != "orders" || topics[0].Partitions != 3 || topics[0].ID != created.ID {
		t.Fatalf("after reopen: %+v", topics)
	}
	if got := topics[0].Effective("max.message.bytes"); got != "2000000" {
		t.Fatalf("override lost: %q", got)
	}
	if got := topics[0].Effective("compression.type"); got != "producer" {
		t.Fatalf("default: %q", got)
	}
	if byID, ok := s2.TopicByID(created.ID); !ok || byID.Name != "orders" {
		t.Fatalf("TopicByID: %+v %v", byID, ok)
	}
}

func TestValidateOnlyRecordsNothing(t *testing.T) {
	s := openStore(t, t.TempDir())
	if _, err := s.CreateTopic("t", 2, nil, true); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Topic("t"); ok {
		t.Fatal("validate-only create recorded the topic")
	}
}

func TestRefusals(t *testing.T) {
	s := openStore(t, t.TempDir())
	cases := []struct {
		name       string
		partitions int32
		configs    map[string]string
		want       error
	}{
		{"bad/name", 1, nil, ErrInvalidTopic},
		{"..", 1, nil, ErrInvalidTopic},
		{"", 1, nil, ErrInvalidTopic},
		{strings.Repeat("a", 250), 1, nil, ErrInvalidTopic},
		{"ok", 0, nil, ErrInvalidPartitions},
		{"ok", MaxPartitions + 1, nil, ErrInvalidPartitions},
		{"ok", 1, map[string]string{"no.such.config": "1"}, ErrInvalidConfig},
		{"ok", 1, map[string]string{"max.message.bytes": "-5"}, ErrInvalidConfig},
		{"ok", 1, map[string]string{"compression.type": "brotli"}, ErrInvalidConfig},
		{"ok", 1, map[string]string{"message.timestamp.type": "Whenever"}, ErrInvalidConfig},
	}
	for _, c := range cases {
		if _, err := s.CreateTopic(c.name, c.partitions, c.configs, false); !errors.Is(err, c.want) {
			t.Errorf("CreateTopic(%.20q, %d, %v) = %v, want %v", c.name, c.partitions, c.configs, err, c.want)
		}
	}
	if len(s.Topics()) != 0 {
		t.Fatalf("refused topics were recorded: %+v", s.Topics())
	}
	if _, err := s.DeleteTopic("never"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("delete unknown: %v", err)
	}
}

func TestProducerIDsNeverRepeatAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	seen := make(map[int64]bool)
	for restart := 0; restart < 3; restart++ {
		s := openStore(t, dir)
		for i := 0; i < producerIDBlock+7; i++ { // crosses a block boundary
			id, err := s.NextProducerID()
			if err != nil {
				t.Fatal(err)
			}
			if seen[id] {
				t.Fatalf("producer id %d handed out twice (restart %d)", id, restart)
			}
			seen[id] = true
		}
		s.Close()
	}
}

func TestSetTopicConfigs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.CreateTopic("t", 1, map[string]string{"retention.ms": "1000"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTopicConfigs("t", map[string]string{"retention.ms": "-2"}, false); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("retention.ms=-2: %v", err)
	}
	if _, err := s.SetTopicConfigs("nope", nil, false); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	if tp, err := s.SetTopicConfigs("t", map[string]string{"retention.bytes": "5"}, true); err != nil || tp.Configs["retention.bytes"] != "5" {
		t.Fatalf("validate only: %+v %v", tp, err)
	}
	if tp, _ := s.Topic("t"); tp.Effective("retention.ms") != "1000" || tp.Effective("retention.bytes") != "-1" {
		t.Fatalf("validate only changed the topic: %+v", tp.Configs)
	}
	if _, err := s.SetTopicConfigs("t", map[string]string{"retention.bytes": "5"}, false); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openStore(t, dir)
	tp, _ := s2.Topic("t")
	if tp.Effective("retention.bytes") != "5" || tp.Effective("retention.ms") != TopicConfigDefaults["retention.ms"] {
		t.Fatalf("after reopen: %+v", tp.Configs)
	}
}

func TestSetPartitionCount(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.CreateTopic("t", 2, nil, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int32{1, 2, MaxPartitions + 1} {
		if _, err := s.SetPartitionCount("t", n, false); !errors.Is(err, ErrInvalidPartitions) {
			t.Fatalf("count %d: %v", n, err)
		}
	}
	if _, err := s.SetPartitionCount("nope", 3, false); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	if tp, err := s.SetPartitionCount("t", 3, true); err != nil || tp.Partitions != 3 {
		t.Fatalf("validate only: %+v %v", tp, err)
	}
	if tp, _ := s.Topic("t"); tp.Partitions != 2 {
		t.Fatalf("validate only changed the count to %d", tp.Partitions)
	}
	if _, err := s.SetPartitionCount("t", 5, false); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openStore(t, dir)
	if tp, _ := s2.Topic("t"); tp.Partitions != 5 {
		t.Fatalf("after reopen: %d partitions", tp.Partitions)
	}
}

// openStore opens a Store on a LocalLog in dir as node 1, closed when the test ends.
func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStorePlacesPartitionsOnItsNode(t *testing.T) {
	s := openStore(t, t.TempDir())
	tp, err := s.CreateTopic("t", 2, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if tp, err = s.SetPartitionCount("t", 3, false); err != nil {
		t.Fatal(err)
	}
	if len(tp.Assignments) != 3 {
		t.Fatalf("%d assignments for %d partitions", len(tp.Assignments), tp.Partitions)
	}
	for i, a := range tp.Assignments {
		if !slices.Equal(a.Replicas, []int32{1}) || a.Leader != 1 || !slices.Equal(a.ISR, []int32{1}) || a.LeaderEpoch != 0 || a.PartitionEpoch != 0 {
			t.Fatalf("partition %d: %+v", i, a)
		}
	}
	if tp, err = s.SetTopicConfigs("t", map[string]string{"segment.ms": "5"}, false); err != nil || tp.ConfigEpoch != 1 {
		t.Fatalf("config epoch after a change: %+v, %v", tp, err)
	}
}

// TestValidateOnlyWritesNothing: validate-only requests leave the files as they were.
func TestValidateOnlyWritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.CreateTopic("t", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	files := func() map[string]string {
		m := map[string]string{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = string(b)
		}
		return m
	}
	before := files()
	if _, err := s.CreateTopic("u", 2, nil, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTopicConfigs("t", map[string]string{"segment.ms": "5"}, true); err != nil {
		t.Fatal(err)
	}
	if tp, err := s.SetPartitionCount("t", 4, true); err != nil || tp.Partitions != 4 || len(tp.Assignments) != 4 {
		t.Fatalf("validate-only partition count: %+v, %v", tp, err)
	}
	if _, err := s.CreateTopic("t", 1, nil, true); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("validate-only create of an existing topic: %v", err)
	}
	if !maps.Equal(files(), before) {
		t.Fatal("a validate-only request changed the metadata files")
	}
	if tp, _ := s.Topic("t"); tp.Partitions != 1 || tp.ConfigEpoch != 0 {
		t.Fatalf("a validate-only request changed the topic: %+v", tp)
	}
}

func TestReadersGetTheirOwnConfigs(t *testing.T) {
	s := openStore(t, t.TempDir())
	if _, err := s.CreateTopic("t", 1, map[string]string{"segment.ms": "5"}, false); err != nil {
		t.Fatal(err)
	}
	tp, _ := s.Topic("t")
	tp.Configs["segment.ms"] = "6"
	delete(tp.Configs, "segment.ms")
	if tp, _ := s.Topic("t"); tp.Configs["segment.ms"] != "5" {
		t.Fatalf("a reader's change reached the store: %v", tp.Configs)
	}
}

// TestStoreOnAGivenLog: with Config.Log the store proposes to that log, initializes the
// cluster once, and creates nothing in Dir.
func TestStoreOnAGivenLog(t *testing.T) {
	l := openLocal(t, t.TempDir(), 1000)
	unused := filepath.Join(t.TempDir(), "unused")
	s, err := Open(Config{Dir: unused, Log: l, NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := s.ClusterID()
	if id == "" || l.State().ClusterID() != id {
		t.Fatalf("cluster id %q, log's %q", id, l.State().ClusterID())
	}
	if s, err = Open(Config{Log: l}); err != nil || s.ClusterID() != id {
		t.Fatalf("second store on the log: %v, cluster id %q", err, s.ClusterID())
	}
	if _, err := os.Stat(unused); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Dir was used: %v", err)
	}
	s.Close()
	if _, err := l.Propose(context.Background(), AllocateProducerIDs{Count: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("the store did not close its log: %v", err)
	}
}

// TestConcurrentUse: writers and readers at once (run with -race); every producer id handed
// out once, every topic created once.
func TestConcurrentUse(t *testing.T) {
	s := openStore(t, t.TempDir())
	const workers, each = 4, 300
	ids := make(chan int64, workers*each)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id, err := s.NextProducerID()
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
				if i%50 == 0 {
					if _, err := s.CreateTopic(fmt.Sprintf("t%d-%d", w, i), 1, nil, false); err != nil {
						t.Error(err)
						return
					}
				}
				for _, tp := range s.Topics() {
					if len(tp.Assignments) != int(tp.Partitions) {
						t.Errorf("topic %s: %d assignments, %d partitions", tp.Name, len(tp.Assignments), tp.Partitions)
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("producer id %d handed out twice", id)
		}
		seen[id] = true
	}
	if n := len(s.Topics()); n != workers*each/50 {
		t.Fatalf("%d topics, want %d", n, workers*each/50)
	}
}

// TestStandardTopicConfigs: every standard Kafka topic config is accepted at its default and
// at another valid value, and refused out of its range; the applied set is a subset of them.
func TestStandardTopicConfigs(t *testing.T) {
	for k, v := range TopicConfigDefaults {
		if err := ValidateConfigs(map[string]string{k: v}); err != nil {
			t.Errorf("default %s=%q refused: %v", k, v, err)
		}
	}
	for k := range TopicConfigApplied {
		if _, ok := TopicConfigDefaults[k]; !ok {
			t.Errorf("applied config %s has no default", k)
		}
	}
	for _, c := range []struct {
		k, good, bad string
	}{
		{"min.compaction.lag.ms", "60000", "-1"},
		{"max.compaction.lag.ms", "86400000", "soon"},
		{"delete.retention.ms", "0", "-5"},
		{"min.cleanable.dirty.ratio", "0.1", "1.5"},
		{"segment.bytes", "104857600", "1000"},
		{"segment.index.bytes", "4096", "2"},
		{"flush.messages", "1", "0"},
		{"local.retention.ms", "-2", "-3"},
		{"compression.gzip.level", "9", "10"},
		{"compression.lz4.level", "17", "0"},
		{"compression.zstd.level", "-5", "23"},
		{"preallocate", "true", "yes"},
		{"leader.replication.throttled.replicas", "0:1, 1:2", "0-1"},
		{"follower.replication.throttled.replicas", "*", "all"},
		{"message.timestamp.before.max.ms", "3600000", "-1"},
		{"message.format.version", "2.8", ""},
	} {
		if err := ValidateConfigs(map[string]string{c.k: c.good}); err != nil {
			t.Errorf("%s=%q refused: %v", c.k, c.good, err)
		}
		if err := ValidateConfigs(map[string]string{c.k: c.bad}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s=%q: %v, want ErrInvalidConfig", c.k, c.bad, err)
		}
	}
}
