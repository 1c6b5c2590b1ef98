package dedupe

import "testing"

func TestWindowEvictsOldest(t *testing.T) {
	w := NewWindow[int](2)
	w.Put(Key{"a", "1"}, 1)
	w.Put(Key{"a", "2"}, 2)
	w.Put(Key{"a", "1"}, 10) // overwrite does not take a slot
	if v, ok := w.Get(Key{"a", "1"}); !ok || v != 10 {
		t.Fatalf("Get(a/1) = %v %v", v, ok)
	}
	w.Put(Key{"b", "1"}, 3)
	if _, ok := w.Get(Key{"a", "1"}); ok {
		t.Fatal("oldest key survived eviction")
	}
	if v, ok := w.Get(Key{"a", "2"}); !ok || v != 2 {
		t.Fatalf("Get(a/2) = %v %v", v, ok)
	}
	if w.Len() != 2 {
		t.Fatalf("Len = %d", w.Len())
	}
}
