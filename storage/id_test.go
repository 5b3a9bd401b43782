package storage

import (
	"strings"
	"testing"
	"time"
)

func TestSortableID(t *testing.T) {
	t0 := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		at := t0.Add(time.Duration(i/10) * time.Nanosecond) // ten ids per nanosecond
		id := SortableID(at)
		if len(id) != SortableIDLen || strings.ToLower(id) != id {
			t.Fatalf("SortableID = %q: want %d lowercase hex digits", id, SortableIDLen)
		}
		if seen[id] {
			t.Fatalf("SortableID repeated %q", id)
		}
		seen[id] = true
		got, ok := SortableIDTime(id)
		if !ok || !got.Equal(at) {
			t.Fatalf("SortableIDTime(%q) = %v, %v; want %v", id, got, ok, at)
		}
		if i%10 == 0 && prev != "" && id <= prev {
			t.Fatalf("id %q of a later time sorts before %q", id, prev)
		}
		prev = id
	}
	for _, bad := range []string{"", "0123", strings.Repeat("g", 32), strings.Repeat("F", 32), strings.Repeat("f", 32), strings.Repeat("0", 33)} {
		if _, ok := SortableIDTime(bad); ok {
			t.Errorf("SortableIDTime(%q) accepted", bad)
		}
	}
}
