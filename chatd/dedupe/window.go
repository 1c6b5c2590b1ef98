// Package dedupe remembers the most recent request keys so that a client's
// resend is answered with the original result instead of being applied twice.
package dedupe

// Key identifies a request: the sender and the id the client chose for it.
// Keying by sender as well stops one user's id from colliding with another's.
type Key struct{ Sender, ID string }

// Window remembers the results of the last Size keys. It is a map plus a ring
// of keys in insertion order, so eviction is O(1) and memory is bounded
// whatever the clients send. It is not safe for concurrent use.
type Window[V any] struct {
	size  int
	seen  map[Key]V
	order []Key
	next  int
}

// NewWindow returns a window of the given size (at least 1). Storage is
// allocated on first use, so idle rooms cost nothing.
func NewWindow[V any](size int) *Window[V] {
	if size < 1 {
		size = 1
	}
	return &Window[V]{size: size}
}

// Get returns the result remembered for k.
func (w *Window[V]) Get(k Key) (V, bool) {
	v, ok := w.seen[k]
	return v, ok
}

// Put remembers v for k, evicting the oldest key when the window is full.
func (w *Window[V]) Put(k Key, v V) {
	if w.seen == nil {
		w.seen = make(map[Key]V)
	}
	if _, ok := w.seen[k]; ok {
		w.seen[k] = v
		return
	}
	if len(w.order) < w.size {
		w.order = append(w.order, k)
	} else {
		delete(w.seen, w.order[w.next])
		w.order[w.next] = k
		w.next = (w.next + 1) % w.size
	}
	w.seen[k] = v
}

// Len returns the number of keys remembered.
func (w *Window[V]) Len() int { return len(w.seen) }
