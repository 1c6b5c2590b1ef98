package owner

import (
	"errors"

	"github.com/ringchat/ringchat/chatd/roomlog"
)

// Bringing a replica's copy to the owner's log. The owner offers its log's
// metadata (epoch, term, head, oldest, term starts); the replica keeps what
// it shares with it (roomlog.Match: it cuts a copy that diverged, and starts
// over when it cannot be bridged), durably, and answers how far its copy
// goes. The owner then sends the rest in chunks of at most ChunkSize
// messages, one at a time, each acknowledged once durable; while a replica
// catches up it gets no replicates (they would overtake the chunks), and it
// counts for commits up to what it acknowledged. Once a chunk's
// acknowledgement finds the replica at the head, it follows by replicates.
// A replica that restarts with its disk, or that missed a few messages,
// gets only what it lacks; one of another epoch gets everything kept.

// replicaSync is one replica's catch-up.
type replicaSync struct {
	// gen tells this catch-up from an earlier one of the same replica
	// (answers to that one are ignored).
	gen uint64
	// sent is the newest sequence number the replica holds or was sent.
	sent uint64
}

// syncLocked (re)starts bringing rep to the log. Until it is done, rep
// holds back commits beyond what it acknowledged; if it fails, rep is
// repaired later (see retryLocked). Callers hold r.mu.
func (r *room) syncLocked(rep string) {
	r.syncGen++
	st := &replicaSync{gen: r.syncGen}
	r.syncs[rep] = st
	offer := SyncOffer{Meta: r.log.Meta()}
	offer.Meta.Term = r.term
	term, epoch, gen := r.term, offer.Meta.Epoch, st.gen
	r.svc.out.SyncOffer(rep, offer, func(ans SyncAnswer, err error) {
		r.onSyncAnswer(rep, gen, epoch, term, ans, err)
	})
}

// current returns rep's catch-up if it is still the one numbered gen, of
// the log of epoch in term. Callers hold r.mu.
func (r *room) currentSync(rep string, gen uint64, epoch string, term uint64) *replicaSync {
	st := r.syncs[rep]
	if r.dead || st == nil || st.gen != gen || term != r.term || epoch != r.log.Epoch() || r.state == stateWaiting {
		return nil
	}
	return st
}

func (r *room) onSyncAnswer(rep string, gen uint64, epoch string, term uint64, ans SyncAnswer, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.currentSync(rep, gen, epoch, term)
	if st == nil {
		return
	}
	if err != nil {
		r.syncFailedLocked(rep, "sync offer", err)
		return
	}
	r.acked[rep] = min(ans.Have, r.log.Head())
	st.sent = r.acked[rep]
	r.sendChunkLocked(rep, st)
	r.commitLocked(r.replicatedUpTo())
}

// sendChunkLocked sends rep the next chunk of the log, or ends its
// catch-up when it has everything. Callers hold r.mu.
func (r *room) sendChunkLocked(rep string, st *replicaSync) {
	if st.sent >= r.log.Head() {
		delete(r.syncs, rep)
		r.repairedUpTo(rep)
		return
	}
	entries, err := r.log.Read(st.sent+1, r.svc.cfg.ChunkSize)
	if err != nil || len(entries) == 0 {
		// Retention removed what the replica lacks meanwhile: offer again,
		// and the replica starts over at the oldest message kept.
		r.svc.log.Warn("could not read the next chunk for a replica; offering the log again", "room", r.name, "replica", rep, "from", st.sent+1, "err", err)
		r.syncLocked(rep)
		return
	}
	last := entries[len(entries)-1].Msg.Seq
	st.sent = last
	term, epoch, gen := r.term, r.log.Epoch(), st.gen
	r.svc.out.SyncChunk(rep, Chunk{Room: r.name, Epoch: epoch, Term: term, Entries: entries}, func(err error) {
		r.onChunkStored(rep, gen, epoch, term, last, err)
	})
}

func (r *room) onChunkStored(rep string, gen uint64, epoch string, term, last uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.currentSync(rep, gen, epoch, term)
	if st == nil {
		return
	}
	if err != nil {
		r.syncFailedLocked(rep, "sync chunk", err)
		return
	}
	r.acked[rep] = max(r.acked[rep], last)
	r.sendChunkLocked(rep, st)
	r.commitLocked(r.replicatedUpTo())
}

// syncFailedLocked handles a refused or lost offer or chunk: a refusal for
// the term fences the room; anything else marks rep for repair (a new
// catch-up after a backoff). Callers hold r.mu.
func (r *room) syncFailedLocked(rep, op string, err error) {
	delete(r.syncs, rep)
	if errors.Is(err, ErrStaleTerm) || errors.Is(err, ErrNotMember) {
		r.fencedLocked(rep, err)
		return
	}
	r.replicationFailed(rep, op, r.log.Head(), err)
}

// copyMeta is the metadata of a copy a node answers claims with.
func copyInfo(l *roomlog.Log) *CopyInfo {
	return &CopyInfo{Epoch: l.Epoch(), Term: l.Term(), Head: l.Head()}
}
