package meta

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// legacyState is meta/meta.json as versions before the command log wrote it: the whole state
// as indented JSON, replaced atomically on every change.
type legacyState struct {
	ClusterID string                  `json:"cluster_id"`
	Topics    map[string]*legacyTopic `json:"topics"`
	// NextProducerIDFrom: every id below it may have been handed out (it was reserved in
	// blocks before use), none at or above it.
	NextProducerIDFrom int64 `json:"next_producer_id_block"`
}

type legacyTopic struct {
	Name       string            `json:"name"`
	ID         [16]byte          `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// importLegacy turns a meta.json into a State: the cluster and each topic go through Apply, so
// an imported state meets every rule a created one does; the partitions are placed on nodeID
// (replica, leader and ISR, epochs 0), which is where a single node kept them. It draws nothing
// at random, so importing the same file again gives the same state.
func importLegacy(b []byte, nodeID int32) (*State, error) {
	var old legacyState
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if old.NextProducerIDFrom < 0 {
		return nil, fmt.Errorf("%w: next_producer_id_block %d", ErrCorrupt, old.NextProducerIDFrom)
	}
	st := NewState()
	if _, err := Apply(st, InitCluster{ClusterID: old.ClusterID}); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(old.Topics)) {
		t := old.Topics[name]
		if t == nil || t.Name != name {
			return nil, fmt.Errorf("%w: topic entry %q", ErrCorrupt, name)
		}
		if t.Partitions < 1 || t.Partitions > MaxPartitions {
			return nil, fmt.Errorf("%w: topic %q has %d partitions", ErrCorrupt, name, t.Partitions)
		}
		cmd := CreateTopic{Name: t.Name, ID: t.ID, Configs: t.Configs, Partitions: localPlacement(nodeID, int(t.Partitions))}
		if _, err := Apply(st, cmd); err != nil {
			return nil, err
		}
	}
	// Set, not allocated through a command: the value may exceed what one command allocates.
	st.nextProducerID = old.NextProducerIDFrom
	return st, nil
}

// localPlacement places n new partitions on one node: replica, ISR and leader. The partitions
// share one replica list, which Apply copies.
func localPlacement(nodeID int32, n int) []NewPartition {
	node := []int32{nodeID}
	ps := make([]NewPartition, n)
	for i := range ps {
		ps[i] = NewPartition{Replicas: node, ISR: node, Leader: nodeID}
	}
	return ps
}
