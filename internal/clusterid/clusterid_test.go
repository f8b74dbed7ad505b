package clusterid

import "testing"

func TestRecordRoundTripsAndNothingElseParses(t *testing.T) {
	id := New()
	if !Valid(id) {
		t.Fatalf("New gave an invalid ID %q", id)
	}
	if New() == id {
		t.Fatal("two New IDs are equal")
	}
	got, ok := Parse(Record(id))
	if !ok || got != id {
		t.Fatalf("Parse(Record(%q)) = %q, %v", id, got, ok)
	}
	for _, bad := range []string{
		"", "raftelect.cluster-id.v1:", "raftelect.cluster-id.v1:" + id[:31],
		"raftelect.cluster-id.v1:" + id + "0", "raftelect.cluster-id.v1:" + id[:31] + "G",
		"raftelect.cluster-id.v2:" + id, id,
	} {
		if _, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
