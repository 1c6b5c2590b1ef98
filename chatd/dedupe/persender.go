package dedupe

// PerSender remembers recent request keys in one window per sender, so
// that one sender's flood of new ids evicts its own oldest keys and
// nobody else's. Memory is bounded twice: each sender keeps at most
// perSender keys, and all senders together at most total. When the total
// is reached, room is made at the expense of the sender holding the most
// keys (the newcomer itself when it holds as many): a sender holding no
// more than its fair share (total divided by the senders present) never
// loses a key to another. It is not safe for concurrent use.
type PerSender[V any] struct {
	perSender, total int
	n                int // keys held, all senders together
	senders          map[string]*senderWindow[V]
	// bySize[k] holds the senders that hold exactly k keys (k ≥ 1), so
	// that the largest is found without a scan; largest is an upper bound
	// of the largest non-empty k.
	bySize  []map[string]struct{}
	largest int
}

// senderWindow is one sender's keys, oldest first.
type senderWindow[V any] struct {
	seen  map[string]V
	order []string // order[head:] are the keys, oldest first
	head  int
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
		bySize:  make([]map[string]struct{}, perSender+1),
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
// sender's oldest; a new key beyond the total evicts the oldest key of the
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
		p.evictOldest(k.Sender, w)
	case p.n >= p.total:
		victim := p.largestSender()
		if w != nil && len(w.seen) >= len(p.senders[victim].seen) {
			victim = k.Sender
		}
		p.evictOldest(victim, p.senders[victim])
		w = p.senders[k.Sender] // the newcomer's window may have emptied
	}
	if w == nil {
		w = &senderWindow[V]{seen: make(map[string]V)}
		p.senders[k.Sender] = w
	}
	p.resize(k.Sender, len(w.seen), len(w.seen)+1)
	w.seen[k.ID] = v
	w.order = append(w.order, k.ID)
	p.n++
}

// evictOldest forgets sender's oldest key, and the sender once it holds
// none.
func (p *PerSender[V]) evictOldest(sender string, w *senderWindow[V]) {
	id := w.order[w.head]
	w.order[w.head] = ""
	w.head++
	delete(w.seen, id)
	p.n--
	p.resize(sender, len(w.seen)+1, len(w.seen))
	switch {
	case len(w.seen) == 0:
		delete(p.senders, sender)
	case w.head > len(w.order)/2:
		// Compact once half the slice is dead, so a long-lived sender's
		// slice stays within twice its keys.
		w.order = append(w.order[:0:0], w.order[w.head:]...)
		w.head = 0
	}
}

// resize moves sender from the bucket of size from to that of size to
// (0 means none).
func (p *PerSender[V]) resize(sender string, from, to int) {
	if from > 0 {
		delete(p.bySize[from], sender)
	}
	if to > 0 {
		if p.bySize[to] == nil {
			p.bySize[to] = make(map[string]struct{})
		}
		p.bySize[to][sender] = struct{}{}
		p.largest = max(p.largest, to)
	}
}

// largestSender returns a sender holding the most keys. There is one:
// it is only called with keys held.
func (p *PerSender[V]) largestSender() string {
	for p.largest > 0 && len(p.bySize[p.largest]) == 0 {
		p.largest--
	}
	for s := range p.bySize[p.largest] {
		return s
	}
	panic("dedupe: PerSender holds keys but no sender")
}

// Len returns the number of keys remembered, all senders together.
func (p *PerSender[V]) Len() int { return p.n }

// Senders returns the number of senders with keys remembered.
func (p *PerSender[V]) Senders() int { return len(p.senders) }
