package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// newApiVersionsHandler answers ApiVersions (key 18) from the registry, so the broker advertises
// exactly the APIs and versions it handles. An unsupported ApiVersions version is answered by the
// server itself in the v0 format (KIP-511).
func (b *Broker) newApiVersionsHandler(reg *Registry) HandleFunc {
	return func(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
		resp := kreq.(*kmsg.ApiVersionsRequest).ResponseKind().(*kmsg.ApiVersionsResponse)
		resp.ApiKeys = reg.Versions()
		respond(resp)
	}
}
