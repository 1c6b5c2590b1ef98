package roomlog

// Match finds how much of this copy another copy (src, the log it is to
// follow) shares, as Kafka's followers do with leader epochs: keep is the
// newest sequence number up to which both hold the same messages, so this
// copy needs only src's messages after it. reset is true when the copy
// cannot be bridged to src at all — another epoch, or src no longer keeps
// the messages right after keep — and must start over at src.Oldest-1.
//
// Within an epoch two copies agree on every message of the terms they
// share: a term's messages were all sequenced by one owner, who started
// from a copy holding every earlier committed message. So, with T the term
// of this copy's newest message, both copies agree up to the end of T in
// src (where src's next term starts, or its head), and up to this copy's
// head; when src holds no message of T at all, the messages of T here are
// ones src's owners never took, and the copy is cut back to where src left
// T's predecessors behind, then compared again.
func (l *Log) Match(src Meta) (keep uint64, reset bool) { return Match(l.Meta(), src) }

// Match is Log.Match for a copy described by dst (a node holding dst's copy
// and src's metadata can answer for it).
func Match(dst, src Meta) (keep uint64, reset bool) {
	if dst.Epoch != src.Epoch {
		return 0, true
	}
	head, terms := dst.Head, dst.Terms
	for {
		if head == 0 {
			break
		}
		t := termOf(terms, head)
		if t == 0 {
			// The term starts here do not reach back to head: nothing to
			// compare with.
			return 0, true
		}
		end, found := endOfTerm(src, t)
		if found {
			head = min(head, end)
			break
		}
		// src has no message of term t: cut this copy before its first
		// message of t (or to where src's newer terms begin) and compare
		// again.
		start := startOf(terms, t)
		head = min(start-1, end)
		for len(terms) > 0 && terms[len(terms)-1].Seq > head {
			terms = terms[:len(terms)-1]
		}
	}
	if head+1 < src.Oldest {
		return 0, true
	}
	return head, false
}

// termOf is the term of the message at seq according to terms (0 when the
// term starts do not reach back that far).
func termOf(terms []TermStart, seq uint64) uint64 {
	for i := len(terms) - 1; i >= 0; i-- {
		if terms[i].Seq <= seq {
			return terms[i].Term
		}
	}
	return 0
}

// startOf is the first sequence number of term t in terms.
func startOf(terms []TermStart, t uint64) uint64 {
	for _, ts := range terms {
		if ts.Term == t {
			return ts.Seq
		}
	}
	return 0
}

// endOfTerm returns, in src, the last sequence number of the newest term at
// or below t (where the next term starts, less one, or src's head), and
// whether src holds messages of t itself. Without term starts reaching that
// far back it returns 0.
func endOfTerm(src Meta, t uint64) (end uint64, found bool) {
	for i := len(src.Terms) - 1; i >= 0; i-- {
		if src.Terms[i].Term > t {
			continue
		}
		end = src.Head
		if i+1 < len(src.Terms) {
			end = src.Terms[i+1].Seq - 1
		}
		return end, src.Terms[i].Term == t
	}
	if len(src.Terms) > 0 {
		return src.Terms[0].Seq - 1, false
	}
	return src.Head, false
}
