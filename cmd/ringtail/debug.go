package main

import (
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/ringtail/ringtail/meta"
)

// debugMetadataPath serves, on --debug-listen only, the committed cluster metadata this node
// follows as JSON: what Kafka's Metadata does not carry (partition epochs, broker epochs,
// fenced and shutting-down brokers, config epochs), for people and for the fault tests
// (`make cluster-soak` checks that epochs never go back and that every node holds the same
// state). Its shape is a diagnostic, not an API: it may change with the metadata.
const debugMetadataPath = "/debug/ringtail/metadata"

// debugMetadata is the JSON document at debugMetadataPath.
type debugMetadata struct {
	NodeID     int32         `json:"node_id"`
	Controller int32         `json:"controller"` // -1: none known
	ClusterID  string        `json:"cluster_id"`
	Brokers    []debugBroker `json:"brokers"`
	Topics     []debugTopic  `json:"topics"`
}

type debugBroker struct {
	ID                   int32  `json:"id"`
	Epoch                int64  `json:"epoch"`
	Listener             string `json:"listener"`
	Fenced               bool   `json:"fenced"`
	InControlledShutdown bool   `json:"in_controlled_shutdown"`
}

type debugTopic struct {
	Name        string            `json:"name"`
	ID          string            `json:"id"` // hex
	ConfigEpoch int32             `json:"config_epoch"`
	Configs     map[string]string `json:"configs"` // overrides only
	Partitions  []debugPartition  `json:"partitions"`
}

type debugPartition struct {
	Partition      int32   `json:"partition"`
	Replicas       []int32 `json:"replicas"`
	Leader         int32   `json:"leader"` // meta.NoLeader: offline
	LeaderEpoch    int32   `json:"leader_epoch"`
	PartitionEpoch int32   `json:"partition_epoch"`
	ISR            []int32 `json:"isr"`
}

// newDebugMetadata describes st as node nodeID sees it, with controller the node it names.
func newDebugMetadata(nodeID, controller int32, st *meta.State) debugMetadata {
	d := debugMetadata{NodeID: nodeID, Controller: controller, ClusterID: st.ClusterID(),
		Brokers: []debugBroker{}, Topics: []debugTopic{}}
	for _, b := range st.Brokers() {
		d.Brokers = append(d.Brokers, debugBroker{ID: b.ID, Epoch: b.Epoch, Listener: b.Listener,
			Fenced: b.Fenced, InControlledShutdown: b.InControlledShutdown})
	}
	for _, t := range st.Topics() {
		dt := debugTopic{Name: t.Name, ID: hex.EncodeToString(t.ID[:]), ConfigEpoch: t.ConfigEpoch,
			Configs: t.Configs, Partitions: make([]debugPartition, len(t.Assignments))}
		if dt.Configs == nil {
			dt.Configs = map[string]string{}
		}
		for p, a := range t.Assignments {
			dt.Partitions[p] = debugPartition{Partition: int32(p), Replicas: a.Replicas, Leader: a.Leader,
				LeaderEpoch: a.LeaderEpoch, PartitionEpoch: a.PartitionEpoch, ISR: a.ISR}
		}
		d.Topics = append(d.Topics, dt)
	}
	return d
}

// debugMetadataHandler serves newDebugMetadata of what state returns at each request.
func debugMetadataHandler(nodeID int32, controller func() int32, state func() *meta.State) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The controller (the Raft leader) and the applied state are two reads, not one
		// snapshot: a reader comparing nodes polls until they agree.
		d := newDebugMetadata(nodeID, controller(), state())
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(d) // a client that went away is no concern of the broker's
	})
}
