package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleDeleteGroups answers DeleteGroups (key 42, v0–v3): only empty groups; their offsets are tombstoned.
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleDeleteGroups(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
