package kafkanet

import (
	"fmt"
	"maps"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.IncrementalAlterConfigs, 0, 1, func(h *Handlers) HandleFunc { return h.handleIncrementalAlterConfigs })
}

// handleIncrementalAlterConfigs answers IncrementalAlterConfigs (key 44, v0–1), what
// kafka-configs --alter and kadm's AlterTopicConfigs send: SET and DELETE (back to the default)
// per config of a topic, durably, applied to its partitions at once. APPEND and SUBTRACT are for
// list configs; the only list config here, cleanup.policy, is set whole (delete, compact or
// compact,delete), so they are refused with INVALID_CONFIG.
func (h *Handlers) handleIncrementalAlterConfigs(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		err := h.alterTopicConfigs(r.ResourceType, r.ResourceName, req.ValidateOnly, func(overrides map[string]string) (map[string]string, error) {
			next := maps.Clone(overrides)
			if next == nil {
				next = map[string]string{}
			}
			for _, rc := range r.Configs {
				switch rc.Op {
				case kmsg.IncrementalAlterConfigOpSet:
					if rc.Value == nil {
						return nil, fmt.Errorf("%w: SET %s without a value", kerr.InvalidConfig, rc.Name)
					}
					next[rc.Name] = *rc.Value
				case kmsg.IncrementalAlterConfigOpDelete:
					delete(next, rc.Name)
				default:
					return nil, fmt.Errorf("%w: operation %v on %s: only SET and DELETE are supported (no list configs)",
						kerr.InvalidConfig, rc.Op, rc.Name)
				}
			}
			return next, nil
		})
		if err != nil {
			rr.ErrorCode, rr.ErrorMessage = errorCode(err), errorMessage(err)
			c.Log.Warn("incremental alter configs: refused", "resource", r.ResourceName, "type", r.ResourceType,
				"code", rr.ErrorCode, "err", err)
		} else if !req.ValidateOnly {
			c.Log.Info("topic configs altered", "topic", r.ResourceName, "changes", len(r.Configs))
		}
		resp.Resources = append(resp.Resources, rr)
	}
	respond(resp)
}
