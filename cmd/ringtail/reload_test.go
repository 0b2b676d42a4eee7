package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Every option names a config field, so configChanges sees a change to any of them.
func TestConfigFieldOfEveryOption(t *testing.T) {
	typ := reflect.TypeFor[config]()
	for _, o := range options {
		if _, ok := typ.FieldByName(configField(o.name)); !ok {
			t.Errorf("option %s: no config field %s", o.name, configField(o.name))
		}
	}
}

func TestConfigChanges(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ringtail.conf")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noEnv := func(string) string { return "" }
	args := []string{"--config", file, "--node-id", "3"}
	write("log-level = info\nretention-check-interval = 5m\nnum-partitions = 2\n")
	old, err := loadConfig(args, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	// node-id is set by a flag, so the file cannot change it; the rest is the file's.
	write("log-level = debug\nretention-check-interval = 30s\nnum-partitions = 4\nnode-id = 9\n")
	next, err := loadConfig(args, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	got := configChanges(old, next)
	want := []configChange{
		{name: "num-partitions", old: "2", new: "4"},
		{name: "retention-check-interval", old: "5m0s", new: "30s", live: true},
		{name: "log-level", old: "info", new: "debug", live: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes:\n got %+v\nwant %+v", got, want)
	}
	if c := configChanges(next, next); len(c) != 0 {
		t.Fatalf("no change expected, got %+v", c)
	}
}

func TestJSONLogFormat(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	log := newLogger(&buf, "json", level)
	log.Debug("hidden")
	log.Info("shown", "k", 1)
	level.Set(slog.LevelDebug)
	log.Debug("now shown")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal(lines[0], &rec); err != nil || rec["msg"] != "shown" || rec["k"] != float64(1) {
		t.Fatalf("line %q: %v %v", lines[0], rec, err)
	}
}
