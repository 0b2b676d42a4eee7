package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ringtail/ringtail/broker"
)

// newLogger is the broker's logger: text (key=value) or json lines on w, at a level SIGHUP may
// change. Under systemd, journald stores each line with its own timestamp as well.
func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// liveSettings are the options SIGHUP applies to a running broker; every other option that
// changed is reported as needing a restart.
var liveSettings = map[string]bool{"log-level": true, "retention-check-interval": true}

// configChange is one option whose value differs between two configs.
type configChange struct {
	name     string
	old, new string
	live     bool // applied by a reload; otherwise it takes a restart
}

// configChanges lists the options whose values differ from old to new, in options order.
func configChanges(old, new *config) []configChange {
	var out []configChange
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	for _, o := range options {
		f := configField(o.name)
		a, b := ov.FieldByName(f), nv.FieldByName(f)
		if !a.IsValid() || reflect.DeepEqual(a.Interface(), b.Interface()) {
			continue
		}
		out = append(out, configChange{name: o.name, old: fmt.Sprint(a.Interface()), new: fmt.Sprint(b.Interface()), live: liveSettings[o.name]})
	}
	return out
}

// configField maps an option to its config field, for the options whose field name is not the
// option's name in CamelCase.
func configField(option string) string {
	switch option {
	case "retention-check-interval":
		return "RetentionCheck"
	case "offsets-compact-records":
		return "OffsetsCompact"
	case "offsets-topic-partitions":
		return "OffsetsPartitions"
	case "replica-lag-time-max":
		return "ReplicaLagMax"
	case "wal-io":
		return "WALIO"
	case "node-id":
		return "NodeID"
	}
	out := make([]byte, 0, len(option))
	up := true
	for i := 0; i < len(option); i++ {
		c := option[i]
		if c == '-' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		out = append(out, c)
	}
	return string(out)
}

// reload re-reads the configuration (the same flags, environment and --config file as at start)
// on SIGHUP, applies the live settings and logs the others as needing a restart. A file that
// no longer parses changes nothing. cfg is updated to what is in effect.
func reload(log *slog.Logger, level *slog.LevelVar, cfg *config, args []string, node *broker.Broker, notify *notifier) {
	notify.send(daemon.SdNotifyReloading, daemon.SdNotifyMonotonicUsec())
	defer notify.send(daemon.SdNotifyReady)
	next, err := loadConfig(args, os.Getenv)
	if err != nil {
		log.Error("reload (SIGHUP): the configuration does not parse; nothing changed", "err", err)
		return
	}
	changes := configChanges(cfg, next)
	if len(changes) == 0 {
		log.Info("reload (SIGHUP): nothing changed")
		return
	}
	for _, c := range changes {
		if !c.live {
			log.Warn("reload (SIGHUP): this change takes a restart; still running with the old value", "setting", c.name, "running", c.old, "configured", c.new)
			continue
		}
		switch c.name {
		case "log-level":
			if err := level.UnmarshalText([]byte(next.LogLevel)); err != nil {
				log.Error("reload (SIGHUP): log-level", "err", err)
				continue
			}
			cfg.LogLevel = next.LogLevel
		case "retention-check-interval":
			if !node.SetRetentionCheckInterval(next.RetentionCheck) {
				log.Warn("reload (SIGHUP): the retention timer is off; retention-check-interval unchanged")
				continue
			}
			cfg.RetentionCheck = next.RetentionCheck
		}
		log.Info("reload (SIGHUP): applied", "setting", c.name, "old", c.old, "new", c.new)
	}
}
