package chatdtest

import (
	"fmt"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// TryHistory asks for one history page of room (messages below before, 0
// for the newest; limit 0 for the server's default) and returns it, or the
// error frame the server answered with instead (unavailable while a room
// moves, for example).
func (c *Client) TryHistory(room string, before uint64, limit int) (protocol.HistoryPage, *protocol.Error) {
	c.t.Helper()
	id := fmt.Sprintf("h-%s-%d", room, before)
	c.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: id, Room: room, Before: before, Limit: limit})
	for {
		f := c.Next()
		switch f.Type {
		case protocol.TypeHistory:
			var h protocol.HistoryPage
			if err := f.Decode(&h); err != nil {
				c.t.Fatalf("decode %s: %v", f.Raw, err)
			}
			if h.ID != id {
				c.t.Fatalf("history answer %s to request %s", f.Raw, id)
			}
			return h, nil
		case protocol.TypeError:
			var e protocol.Error
			if err := f.Decode(&e); err != nil {
				c.t.Fatalf("decode %s: %v", f.Raw, err)
			}
			if e.ID != id {
				c.t.Fatalf("error %s while waiting for history %s", f.Raw, id)
			}
			return protocol.HistoryPage{}, &e
		case protocol.TypeMessage, protocol.TypeAck:
			c.stash = append(c.stash, f)
		case protocol.TypePresence, protocol.TypeTyping:
		default:
			c.t.Fatalf("expected a history frame, got %s", f.Raw)
		}
	}
}

// History is TryHistory that fails the test on an error frame.
func (c *Client) History(room string, before uint64, limit int) protocol.HistoryPage {
	c.t.Helper()
	h, e := c.TryHistory(room, before, limit)
	if e != nil {
		c.t.Fatalf("history of %s before %d: error %s (%s)", room, before, e.Code, e.Message)
	}
	return h
}

// HistoryWalk is the whole kept history of a room read page by page from
// the newest, as a client scrolls back.
type HistoryWalk struct {
	// Messages are every message returned, oldest first.
	Messages []protocol.Message
	// First is the newest page (its Epoch, Head and Oldest describe the
	// room); Pages counts the pages read.
	First protocol.HistoryPage
	Pages int
	// Problems lists every broken promise of docs/protocol.md §5.6 met on
	// the way: a page not in ascending order, a page overlapping or not
	// adjacent to the next one, an epoch or head that changed between
	// pages, more:false before the oldest kept seq, or more:true with
	// nothing older.
	Problems []string
}

// WalkHistory reads the whole kept history of room, limit messages a page,
// paging back with before = the lowest seq of the previous page while
// more is true. A page answered unavailable (the room moving between
// nodes) is asked again after a pause, for up to Timeout; any other error
// fails the test.
func (c *Client) WalkHistory(room string, limit int) HistoryWalk {
	c.t.Helper()
	var w HistoryWalk
	var before uint64
	var pages [][]protocol.Message
	for {
		h := c.historyRetry(room, before, limit)
		w.Pages++
		if w.Pages == 1 {
			w.First = h
		} else if h.Epoch != w.First.Epoch {
			w.Problems = append(w.Problems, fmt.Sprintf("page %d (before %d) in epoch %q, the first in %q", w.Pages, before, h.Epoch, w.First.Epoch))
		}
		for i := 1; i < len(h.Messages); i++ {
			if h.Messages[i].Seq != h.Messages[i-1].Seq+1 {
				w.Problems = append(w.Problems, fmt.Sprintf("page %d (before %d): seq %d after %d", w.Pages, before, h.Messages[i].Seq, h.Messages[i-1].Seq))
			}
		}
		if len(h.Messages) > 0 && before > 0 && h.Messages[len(h.Messages)-1].Seq != before-1 {
			w.Problems = append(w.Problems, fmt.Sprintf("page %d (before %d) ends at seq %d", w.Pages, before, h.Messages[len(h.Messages)-1].Seq))
		}
		pages = append(pages, h.Messages)
		if len(h.Messages) == 0 {
			if h.More {
				w.Problems = append(w.Problems, fmt.Sprintf("page %d (before %d) is empty with more:true", w.Pages, before))
			}
			break
		}
		lowest := h.Messages[0].Seq
		if !h.More {
			if lowest != h.Oldest && h.Head > 0 {
				w.Problems = append(w.Problems, fmt.Sprintf("page %d (before %d): more:false at seq %d, but oldest is %d", w.Pages, before, lowest, h.Oldest))
			}
			break
		}
		if lowest <= 1 {
			w.Problems = append(w.Problems, fmt.Sprintf("page %d (before %d) reaches seq %d with more:true", w.Pages, before, lowest))
			break
		}
		before = lowest
	}
	for i := len(pages) - 1; i >= 0; i-- {
		w.Messages = append(w.Messages, pages[i]...)
	}
	return w
}

// historyRetry is History, asking again while the answer is unavailable,
// up to Timeout.
func (c *Client) historyRetry(room string, before uint64, limit int) protocol.HistoryPage {
	c.t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		h, e := c.TryHistory(room, before, limit)
		if e == nil {
			return h
		}
		if e.Code != protocol.CodeUnavailable || time.Now().After(deadline) {
			c.t.Fatalf("history of %s before %d: error %s (%s)", room, before, e.Code, e.Message)
		}
		time.Sleep(100 * time.Millisecond) // the backoff docs/protocol.md asks of a client after unavailable
	}
}
