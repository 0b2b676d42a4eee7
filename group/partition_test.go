package group

import "testing"

// TestPartitionForMatchesKafka checks PartitionFor against values printed by Java 17 with
// String.hashCode and Kafka's Utils.abs (n == Integer.MIN_VALUE ? 0 : Math.abs(n)):
//
//	int h = s.hashCode(); System.out.println(h + " " + abs(h) % 50 + " " + abs(h) % 7);
func TestPartitionForMatchesKafka(t *testing.T) {
	for _, v := range []struct {
		group       string
		hash        int32
		mod50, mod7 int32
	}{
		{"", 0, 0, 0},
		{"a", 97, 47, 6},
		{"group-1", 293427299, 49, 4},
		{"group-2", 293427300, 0, 5},
		{"my-group", -1906497762, 12, 1},
		{"polygenelubricants", -2147483648, 0, 0}, // hashCode is Integer.MIN_VALUE: Utils.abs gives 0
		{"Aa", 2112, 12, 5},
		{"BB", 2112, 12, 5},
		{"g0", 3241, 41, 0},
		{"g1", 3242, 42, 1},
		{"g2", 3243, 43, 2},
		{"doomed", -1326126584, 34, 6},
		{"console-consumer-12345", 158455506, 6, 6},
		{"\u00df-gruppe", 2145321449, 49, 5},
		{"\U0001f600-group", -1198440043, 43, 3}, // outside the BMP: two UTF-16 code units
		{"GROUP", 68091487, 37, 2},
		{"\u65e5\u672c\u8a9e", 25921943, 43, 5},
	} {
		if h := javaStringHash(v.group); h != v.hash {
			t.Errorf("javaStringHash(%q) = %d, Java says %d", v.group, h, v.hash)
		}
		if p := PartitionFor(v.group, 50); p != v.mod50 {
			t.Errorf("PartitionFor(%q, 50) = %d, Kafka says %d", v.group, p, v.mod50)
		}
		if p := PartitionFor(v.group, 7); p != v.mod7 {
			t.Errorf("PartitionFor(%q, 7) = %d, Kafka says %d", v.group, p, v.mod7)
		}
		if p := PartitionFor(v.group, 1); p != 0 {
			t.Errorf("PartitionFor(%q, 1) = %d, want 0", v.group, p)
		}
	}
}
