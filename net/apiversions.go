package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

// ApiVersions (key 18) is answered from the registry, so the broker advertises exactly the APIs
// and versions it handles. An unsupported ApiVersions version is answered by the server itself
// in the v0 format (KIP-511).
func init() {
	apis = append(apis, apiHandler{key: kmsg.ApiVersions, min: 0, max: 4,
		handler: func(_ *Handlers, reg *Registry) HandleFunc {
			return func(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
				resp := kreq.(*kmsg.ApiVersionsRequest).ResponseKind().(*kmsg.ApiVersionsResponse)
				resp.ApiKeys = reg.Versions()
				respond(resp)
			}
		}})
}
