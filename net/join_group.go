package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// handleJoinGroup answers JoinGroup (key 11, v0–v9): a member joins or rejoins; the response is parked until the
// rebalance completes (or MEMBER_ID_REQUIRED on v4+ first joins).
// The group coordinator (package group) decides; see groups.go for how requests reach it.
func (b *Broker) handleJoinGroup(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	b.groups.handle(c, req, respond)
}
