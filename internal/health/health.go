// Package health decides whether a broker's loops are making progress: the pure half of the
// systemd watchdog. The broker samples each component (the Kafka event loops through a probe
// request, the WAL writer, the metadata follower) and pings the watchdog only while no
// component has had work pending without progress for longer than the stall limit. A
// component with nothing to do is healthy however long it idles: progress is asked of work,
// not of time, so a quiet broker is never restarted and a wedged one always is.
//
// No clocks, goroutines or I/O here: the time of each sample is passed in.
package health

import (
	"fmt"
	"strings"
	"time"
)

// Sample is one look at a component.
type Sample struct {
	// Progress is a counter that moves whenever the component completes work (records
	// settled, probe answers received, metadata states applied).
	Progress uint64
	// Pending: the component has work it has not completed.
	Pending bool
}

// Checker remembers, per component, since when it has had work pending without progress.
type Checker struct {
	stall time.Duration
	parts map[string]*part
	order []string // components in the order first observed, for stable reports
}

type part struct {
	progress uint64
	pending  bool
	since    time.Time // when it last progressed or went from idle to pending
}

// New returns a Checker that calls a component stuck once it has had work pending and not
// progressed for longer than stall.
func New(stall time.Duration) *Checker {
	return &Checker{stall: stall, parts: make(map[string]*part)}
}

// Observe records a sample of component name taken at now.
func (c *Checker) Observe(name string, now time.Time, s Sample) {
	p, ok := c.parts[name]
	if !ok {
		c.parts[name] = &part{progress: s.Progress, pending: s.Pending, since: now}
		c.order = append(c.order, name)
		return
	}
	if s.Progress != p.progress || (s.Pending && !p.pending) {
		p.since = now
	}
	p.progress, p.pending = s.Progress, s.Pending
}

// Stuck lists, at now, each component that has had work pending without progress for longer
// than the stall limit, with how long ("wal writer (3s)"); empty when all are healthy.
func (c *Checker) Stuck(now time.Time) []string {
	var out []string
	for _, name := range c.order {
		p := c.parts[name]
		if d := now.Sub(p.since); p.pending && d > c.stall {
			out = append(out, fmt.Sprintf("%s (%v)", name, d.Round(time.Millisecond)))
		}
	}
	return out
}

// Healthy reports whether no component is stuck at now, and otherwise which are.
func (c *Checker) Healthy(now time.Time) (ok bool, why string) {
	stuck := c.Stuck(now)
	if len(stuck) == 0 {
		return true, ""
	}
	return false, "no progress with work pending: " + strings.Join(stuck, ", ")
}
