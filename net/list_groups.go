package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleListGroups answers ListGroups (key 16, v0–v5, state filter from v4).
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleListGroups(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
