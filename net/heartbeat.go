package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleHeartbeat answers Heartbeat (key 12, v0–v4): keeps a member's session alive and tells it when to rejoin.
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleHeartbeat(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
