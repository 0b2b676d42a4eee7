package group

import "unicode/utf16"

// PartitionFor returns the __consumer_offsets partition that holds group groupID when the
// topic has partitions partitions: Kafka's Utils.abs(groupId.hashCode()) % partitions
// (GroupMetadataManager.partitionFor). It must match Kafka bit for bit: clients and tools
// that compute a group's partition themselves (to read its records, or to find its
// coordinator from the offsets partition's leader) must agree with the broker.
func PartitionFor(groupID string, partitions int32) int32 {
	if partitions <= 0 {
		return 0
	}
	h := javaStringHash(groupID)
	// Utils.abs maps Integer.MIN_VALUE to 0, where Math.abs would leave it negative.
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % partitions
}

// javaStringHash is java.lang.String.hashCode: s[0]*31^(n-1) + … + s[n-1] over the string's
// UTF-16 code units, in wrapping 32-bit arithmetic. Kafka decodes the group id from UTF-8, so
// a character outside the Basic Multilingual Plane counts as its two surrogates. Bytes that
// are not valid UTF-8 count as U+FFFD each, as Go's range over a string yields them; Java's
// decoder also substitutes U+FFFD but may fold a malformed sequence into one, so such ids
// (which no Kafka client sends) may hash differently.
func javaStringHash(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			hi, lo := utf16.EncodeRune(r)
			h = 31*h + hi
			h = 31*h + lo
			continue
		}
		h = 31*h + r
	}
	return h
}
