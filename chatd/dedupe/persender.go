package dedupe

// PerSender remembers recent request keys in one window per sender, so
// that one sender's flood of new ids evicts its own oldest keys and
// nobody else's. Memory is bounded twice: each sender keeps at most
// perSender keys, and all senders together at most total. When the total
// is reached, room is made at the expense of a sender holding the most
// keys (the newcomer itself when it holds as many), so a sender holding
// fewer keys than another never loses one: to reach a quiet user's keys, a
// flood needs so many identities that all of them together fill the total
// with no more keys each than that user. It is not safe for concurrent
// use.
type PerSender[V any] struct {
	perSender, total int
	n                int // keys held, all senders together
	senders          map[string]*senderWindow[V]
	// bySize[k] lists the senders holding exactly k keys (k ≥ 1), so that
	// a largest one is found without a scan; largest is an upper bound of
	// the largest non-empty k.
	bySize  []*senderWindow[V]
	largest int
}

// senderWindow is one sender's keys, oldest first, and its place in the
// list of the senders holding as many keys.
type senderWindow[V any] struct {
	sender     string
	seen       map[string]V
	order      []string // order[head:] are the keys, oldest first
	head       int
	prev, next *senderWindow[V]
}

// NewPerSender returns an empty set of windows: at most perSender keys per
// sender and total keys in all (each at least 1; total at least
// perSender).
func NewPerSender[V any](perSender, total int) *PerSender[V] {
	perSender = max(perSender, 1)
	total = max(total, perSender)
	return &PerSender[V]{
		perSender: perSender, total: total,
		senders: make(map[string]*senderWindow[V]),
		bySize:  make([]*senderWindow[V], perSender+1),
	}
}

// Get returns the result remembered for k.
func (p *PerSender[V]) Get(k Key) (V, bool) {
	if w := p.senders[k.Sender]; w != nil {
		v, ok := w.seen[k.ID]
		return v, ok
	}
	var zero V
	return zero, false
}

// Put remembers v for k. A new key beyond the sender's window evicts the
// sender's oldest; a new key beyond the total evicts the oldest key of a
// sender holding the most.
func (p *PerSender[V]) Put(k Key, v V) {
	w := p.senders[k.Sender]
	if w != nil {
		if _, ok := w.seen[k.ID]; ok {
			w.seen[k.ID] = v
			return
		}
	}
	switch {
	case w != nil && len(w.seen) >= p.perSender:
		p.evictOldest(w)
	case p.n >= p.total:
		victim := p.largestSender()
		if w != nil && len(w.seen) >= len(victim.seen) {
			victim = w
		}
		p.evictOldest(victim)
		w = p.senders[k.Sender] // the newcomer's window may have emptied
	}
	if w == nil {
		w = &senderWindow[V]{sender: k.Sender, seen: make(map[string]V)}
		p.senders[k.Sender] = w
	}
	p.unlink(w, len(w.seen))
	w.seen[k.ID] = v
	w.order = append(w.order, k.ID)
	p.link(w, len(w.seen))
	p.n++
}

// evictOldest forgets w's oldest key, and its sender once it holds none.
func (p *PerSender[V]) evictOldest(w *senderWindow[V]) {
	p.unlink(w, len(w.seen))
	id := w.order[w.head]
	w.order[w.head] = ""
	w.head++
	delete(w.seen, id)
	p.n--
	switch {
	case len(w.seen) == 0:
		delete(p.senders, w.sender)
		return
	case w.head > len(w.order)/2:
		// Compact once half the slice is dead, so a long-lived sender's
		// slice stays within twice its keys.
		w.order = append(w.order[:0:0], w.order[w.head:]...)
		w.head = 0
	}
	p.link(w, len(w.seen))
}

// link puts w in the list of the senders holding size keys (none for 0).
func (p *PerSender[V]) link(w *senderWindow[V], size int) {
	if size == 0 {
		return
	}
	w.prev, w.next = nil, p.bySize[size]
	if w.next != nil {
		w.next.prev = w
	}
	p.bySize[size] = w
	p.largest = max(p.largest, size)
}

// unlink takes w out of the list of the senders holding size keys.
func (p *PerSender[V]) unlink(w *senderWindow[V], size int) {
	if size == 0 {
		return
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		p.bySize[size] = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
}

// largestSender returns a sender holding the most keys. There is one:
// it is only called with keys held.
func (p *PerSender[V]) largestSender() *senderWindow[V] {
	for p.largest > 0 && p.bySize[p.largest] == nil {
		p.largest--
	}
	if p.largest == 0 {
		panic("dedupe: PerSender holds keys but no sender")
	}
	return p.bySize[p.largest]
}

// Len returns the number of keys remembered, all senders together.
func (p *PerSender[V]) Len() int { return p.n }

// Senders returns the number of senders with keys remembered.
func (p *PerSender[V]) Senders() int { return len(p.senders) }
