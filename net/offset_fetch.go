package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleOffsetFetch answers OffsetFetch (key 9, v0–v9, several groups per request from v8, require_stable).
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleOffsetFetch(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
