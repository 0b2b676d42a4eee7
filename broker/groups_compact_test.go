package broker

import (
	"fmt"
	"testing"

	"github.com/ringtail/ringtail/group"
)

func TestLastValues(t *testing.T) {
	rec := func(k, v string) group.Record {
		r := group.Record{Key: []byte(k)}
		if v != "" {
			r.Value = []byte(v)
		}
		return r
	}
	in := []group.Record{
		rec("a", "1"), rec("b", "1"), rec("a", "2"), rec("c", "1"),
		rec("b", ""),                               // deleted
		rec("d", "1"), rec("d", ""), rec("d", "2"), // deleted, then back
		rec("c", "2"),
	}
	got := lastValues(in)
	want := []string{"a=2", "c=2", "d=2"}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %v", len(got), want)
	}
	for i, r := range got {
		if s := fmt.Sprintf("%s=%s", r.Key, r.Value); s != want[i] {
			t.Fatalf("record %d: %s, want %s", i, s, want[i])
		}
	}
}
