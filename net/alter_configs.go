package kafkanet

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.AlterConfigs, 0, 2, func(h *Handlers) HandleFunc { return h.handleAlterConfigs })
}

// handleAlterConfigs answers AlterConfigs (key 33, v0–2): each topic resource's overrides are
// replaced by the configs given (the rest return to their defaults), durably, and applied to
// its partitions at once. Broker configs are static here (flags and the config file).
func (h *Handlers) handleAlterConfigs(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		configs := make(map[string]string, len(r.Configs))
		for _, rc := range r.Configs {
			if rc.Value == nil {
				continue // a null value means the default, as if absent
			}
			configs[rc.Name] = *rc.Value
		}
		err := h.alterTopicConfigs(r.ResourceType, r.ResourceName, req.ValidateOnly, func(map[string]string) (map[string]string, error) {
			return configs, nil
		})
		if err != nil {
			rr.ErrorCode, rr.ErrorMessage = errorCode(err), errorMessage(err)
			c.Log.Warn("alter configs: refused", "resource", r.ResourceName, "type", r.ResourceType,
				"code", rr.ErrorCode, "err", err)
		} else if !req.ValidateOnly {
			c.Log.Info("topic configs replaced", "topic", r.ResourceName, "configs", configs)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	respond(resp)
}

// alterTopicConfigs applies change to the overrides of topic name (a ConfigResourceTypeTopic
// resource) through the node, which stores them and applies them to the topic's partitions.
// Broker configs are static.
func (h *Handlers) alterTopicConfigs(resourceType kmsg.ConfigResourceType, name string, validateOnly bool,
	change func(overrides map[string]string) (map[string]string, error)) error {
	switch resourceType {
	case kmsg.ConfigResourceTypeTopic:
		return h.node.AlterTopicConfigs(name, validateOnly, change)
	case kmsg.ConfigResourceTypeBroker:
		return fmt.Errorf("%w: broker configs are static: set them with flags or the config file and restart", kerr.InvalidRequest)
	default:
		return fmt.Errorf("%w: resource type %d is not supported", kerr.InvalidRequest, resourceType)
	}
}
