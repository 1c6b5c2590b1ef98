package dedupe

import (
	"fmt"
	"testing"
)

func TestPerSenderWindowIsPerSender(t *testing.T) {
	p := NewPerSender[int](3, 100)
	for i := range 3 {
		p.Put(Key{"ann", fmt.Sprint("a", i)}, i)
	}
	// bob's flood evicts only bob's own keys.
	for i := range 50 {
		p.Put(Key{"bob", fmt.Sprint("b", i)}, i)
	}
	for i := range 3 {
		if v, ok := p.Get(Key{"ann", fmt.Sprint("a", i)}); !ok || v != i {
			t.Fatalf("ann's key %d lost to bob's flood", i)
		}
	}
	for i := range 50 {
		_, ok := p.Get(Key{"bob", fmt.Sprint("b", i)})
		if want := i >= 47; ok != want {
			t.Fatalf("bob's key %d kept=%v, want %v (the newest 3)", i, ok, want)
		}
	}
	if p.Len() != 6 || p.Senders() != 2 {
		t.Fatalf("len %d senders %d", p.Len(), p.Senders())
	}
	// A new key of a sender at its cap evicts its own oldest.
	p.Put(Key{"ann", "a3"}, 3)
	if _, ok := p.Get(Key{"ann", "a0"}); ok {
		t.Fatal("ann's oldest key survived her fourth")
	}
	// Putting a key again replaces its value and evicts nothing.
	p.Put(Key{"ann", "a1"}, 11)
	if v, _ := p.Get(Key{"ann", "a1"}); v != 11 || p.Len() != 6 {
		t.Fatalf("re-put: value %d, len %d", v, p.Len())
	}
}

func TestPerSenderTotalEvictsTheLargest(t *testing.T) {
	// 4 keys per sender, 10 in all.
	p := NewPerSender[int](4, 10)
	p.Put(Key{"ann", "1"}, 1)
	p.Put(Key{"bob", "1"}, 1)
	// mallory floods under four names: the total fills, and from then on
	// every new key evicts one of a sender holding the most, one of
	// mallory's names, never ann's or bob's single key.
	for i := range 40 {
		p.Put(Key{fmt.Sprint("m", i%4), fmt.Sprint(i)}, i)
		if p.Len() > 10 {
			t.Fatalf("%d keys held, cap 10", p.Len())
		}
	}
	for _, u := range []string{"ann", "bob"} {
		if _, ok := p.Get(Key{u, "1"}); !ok {
			t.Fatalf("%s's key was evicted while other senders held more", u)
		}
	}
	if p.Len() != 10 || p.Senders() != 6 {
		t.Fatalf("len %d, senders %d; want 10 and 6", p.Len(), p.Senders())
	}
	// Senders whose keys are all evicted are forgotten: memory follows
	// the keys held.
	for i := range 20 {
		p.Put(Key{fmt.Sprint("x", i), "1"}, i)
	}
	if p.Len() != 10 || p.Senders() > 10 {
		t.Fatalf("len %d, senders %d", p.Len(), p.Senders())
	}
}

func TestPerSenderNewcomerAtTheTotal(t *testing.T) {
	p := NewPerSender[int](5, 5)
	for i := range 5 {
		p.Put(Key{"ann", fmt.Sprint(i)}, i)
	}
	// The total is reached by ann alone: bob's first key evicts hers.
	p.Put(Key{"bob", "x"}, 1)
	if _, ok := p.Get(Key{"bob", "x"}); !ok || p.Len() != 5 {
		t.Fatalf("bob's key missing or len %d", p.Len())
	}
	if _, ok := p.Get(Key{"ann", "0"}); ok {
		t.Fatal("ann's oldest key should have made room")
	}
	// A sender holding the most evicts its own key rather than another's.
	p = NewPerSender[int](3, 4)
	p.Put(Key{"ann", "1"}, 1)
	p.Put(Key{"ann", "2"}, 2)
	p.Put(Key{"bob", "1"}, 1)
	p.Put(Key{"bob", "2"}, 2)
	p.Put(Key{"ann", "3"}, 3)
	if _, ok := p.Get(Key{"bob", "1"}); !ok {
		t.Fatal("ann, tied with bob, evicted bob's key instead of her own")
	}
	if _, ok := p.Get(Key{"ann", "1"}); ok {
		t.Fatal("ann's oldest key survived")
	}
}

// benchKeys are 200 senders' ids, built before timing.
func benchKeys() []Key {
	keys := make([]Key, 1<<16)
	for i := range keys {
		keys[i] = Key{fmt.Sprint("u", i%200), fmt.Sprint(i)}
	}
	return keys
}

// The DM path's dedupe before (one node-wide Window of 16 × 1024) and
// after (PerSender, 1024 per sender, 16 × 1024 in all), at the same keys.
func BenchmarkDMDedupePut(b *testing.B) {
	keys := benchKeys()
	b.Run("window", func(b *testing.B) {
		w := NewWindow[int](16384)
		for i := 0; b.Loop(); i++ {
			k := keys[i%len(keys)]
			if _, ok := w.Get(k); !ok {
				w.Put(k, i)
			}
		}
	})
	b.Run("per-sender", func(b *testing.B) {
		p := NewPerSender[int](1024, 16384)
		for i := 0; b.Loop(); i++ {
			k := keys[i%len(keys)]
			if _, ok := p.Get(k); !ok {
				p.Put(k, i)
			}
		}
	})
}
