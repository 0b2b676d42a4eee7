package kafkanet

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/meta"
)

// handleAlterConfigs answers AlterConfigs (key 33, v0–2): each topic resource's overrides are
// replaced by the configs given (the rest return to their defaults), durably, and applied to
// its partitions at once. Broker configs are static here (flags and the config file).
func (b *Broker) handleAlterConfigs(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
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
		err := b.alterTopicConfigs(r.ResourceType, r.ResourceName, req.ValidateOnly, func(map[string]string) (map[string]string, error) {
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
// resource) in the metadata store and then to its open partitions, under topicMu so a
// concurrent create or delete cannot interleave.
func (b *Broker) alterTopicConfigs(resourceType kmsg.ConfigResourceType, name string, validateOnly bool,
	change func(overrides map[string]string) (map[string]string, error)) error {
	switch resourceType {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		return fmt.Errorf("%w: broker configs are static: set them with flags or the config file and restart", kerr.InvalidRequest)
	default:
		return fmt.Errorf("%w: resource type %d is not supported", kerr.InvalidRequest, resourceType)
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	t, ok := b.meta.Topic(name)
	if !ok {
		return fmt.Errorf("%w: unknown topic %q", kerr.UnknownTopicOrPartition, name)
	}
	next, err := change(t.Configs)
	if err != nil {
		return err
	}
	t, err = b.meta.SetTopicConfigs(name, next, validateOnly)
	if err != nil || validateOnly {
		return err
	}
	cfg := partitionConfig(t)
	for _, spec := range PartitionSpecs([]meta.Topic{t}) {
		if p := b.engine.Partition(spec.TopicPartition); p != nil {
			p.SetConfig(cfg)
		}
	}
	return nil
}
