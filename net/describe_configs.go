package kafkanet

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/ringtail/ringtail/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.DescribeConfigs, 0, 4, func(h *Handlers) HandleFunc { return h.handleDescribeConfigs })
}

// Config sources as DescribeConfigs reports them.
const (
	sourceDynamicTopic = 1
	sourceStaticBroker = 4
	sourceDefault      = 5
)

// handleDescribeConfigs answers DescribeConfigs (key 32) for topics and for this broker.
func (h *Handlers) handleDescribeConfigs(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType = r.ResourceType
		rr.ResourceName = r.ResourceName
		var entries []configEntry
		switch r.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t, ok := h.node.Topic(r.ResourceName)
			if !ok {
				rr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				rr.ErrorMessage = errorMessage(fmt.Errorf("unknown topic %q", r.ResourceName))
				break
			}
			for _, name := range sortedConfigNames() {
				entries = append(entries, configEntry{name, t.Effective(name), configSource(t, name),
					!broker.TopicConfigApplied[name]})
			}
		case kmsg.ConfigResourceTypeBroker:
			if self := h.node.NodeID(); r.ResourceName != "" && r.ResourceName != strconv.Itoa(int(self)) {
				rr.ErrorCode = kerr.InvalidRequest.Code
				rr.ErrorMessage = errorMessage(fmt.Errorf("this is broker %d, not %q", self, r.ResourceName))
				break
			}
			entries = h.brokerConfigs()
		default:
			rr.ErrorCode = kerr.InvalidRequest.Code
			rr.ErrorMessage = errorMessage(fmt.Errorf("resource type %d is not supported", r.ResourceType))
		}
		if rr.ErrorCode != 0 {
			c.Log.Warn("describe configs: refused", "resource", r.ResourceName, "type", r.ResourceType, "code", rr.ErrorCode)
		}
		for _, e := range entries {
			if !wanted(r.ConfigNames, e.name) {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			rc.Name = e.name
			v := e.value
			rc.Value = &v
			rc.Source = kmsg.ConfigSource(e.source)
			rc.IsDefault = e.source == sourceDefault
			rc.ReadOnly = r.ResourceType == kmsg.ConfigResourceTypeBroker
			if e.storedOnly {
				doc := storedOnlyDoc
				rc.Documentation = &doc
			}
			rr.Configs = append(rr.Configs, rc)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	respond(resp)
}

type configEntry struct {
	name, value string
	source      int8
	// storedOnly: a topic config Ringtail accepts and keeps but does not act on; said in the
	// entry's documentation (v3+), the one field a client shows for this.
	storedOnly bool
}

// storedOnlyDoc is the documentation of a config Ringtail keeps without applying it.
const storedOnlyDoc = "Accepted and stored by Ringtail for compatibility; not applied."

func (h *Handlers) brokerConfigs() []configEntry {
	var entries []configEntry
	for _, s := range h.node.Settings() {
		entries = append(entries, configEntry{name: s.Name, value: s.Value, source: sourceStaticBroker})
	}
	// Topic defaults are broker configs too, under their broker-level names; those of the
	// configs Ringtail applies, as the others have no broker setting here.
	for _, name := range sortedConfigNames() {
		if !broker.TopicConfigApplied[name] {
			continue
		}
		bname := name
		switch name {
		case "max.message.bytes":
			bname = "message.max.bytes"
		case "message.timestamp.type":
			bname = "log.message.timestamp.type"
		case "cleanup.policy":
			bname = "log.cleanup.policy"
		case "retention.ms":
			bname = "log.retention.ms"
		case "retention.bytes":
			bname = "log.retention.bytes"
		case "segment.ms":
			bname = "log.roll.ms"
		}
		entries = append(entries, configEntry{name: bname, value: broker.TopicConfigDefaults[name], source: sourceDefault})
	}
	return entries
}

func wanted(names []string, name string) bool {
	if names == nil {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

func configSource(t broker.Topic, name string) int8 {
	if _, ok := t.Configs[name]; ok {
		return sourceDynamicTopic
	}
	return sourceDefault
}

func sortedConfigNames() []string {
	names := make([]string, 0, len(broker.TopicConfigDefaults))
	for k := range broker.TopicConfigDefaults {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
