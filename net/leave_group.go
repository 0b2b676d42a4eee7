package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleLeaveGroup answers LeaveGroup (key 13, v0–v5, batched members from v3).
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleLeaveGroup(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
