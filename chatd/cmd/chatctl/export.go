package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

var cmdExport = &command{
	name:    "export",
	summary: "write a room's whole kept history as JSON Lines, oldest first",
	details: `
Reads the room's history through the server like any client allowed to read
the room (no join: nobody sees chatctl arrive) and writes every kept message,
oldest first, as one JSON object per line: the message objects exactly as
the server sends them (docs/protocol.md, "message"). The last line is a
chatctl.export record with the room's epoch, its oldest kept and newest
(head) sequence numbers when the export started, the first and last
exported and the count; a file that does not end with it is incomplete.
The same summary goes to stderr as text. JSON output is implied (--json
changes nothing): chatctl's own records (chatctl.reconnecting,
chatctl.retrying, chatctl.removed, chatctl.error) go to stdout.

The export is the history as it stood when it started: messages sent
meanwhile are left for the next one (--since <head> --epoch <epoch>).
It reads pages of 200 messages, a few at a time, paced under the server's
rate limit (welcome.limits), so its memory stays bounded whatever the
room's size. A page refused with unavailable (the room is moving, its node
is down) is asked again after a full-jitter backoff (0.5 s doubling up to
10 s); a lost connection is reopened and the export goes on where it
stopped. Use --timeout to bound the whole export (default: none).

With --out FILE the export is written to a temporary file in the same
directory (mode 0600) and renamed to FILE once complete: FILE never holds
a partial export. Messages removed by retention while the export runs are
reported (removed in the summary) and skipped; a room recreated meanwhile
(another epoch) fails the export (exit 1, epoch_changed). An unknown room
exports nothing, with epoch "", and exits 0.`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "room to export (required)")
		fs.StringVar(&o.out, "out", "", "write to this file instead of stdout (\"-\": stdout)")
		fs.Int64Var(&o.since, "since", 0, "export only the messages after this sequence number (e.g. the head of an earlier export)")
		fs.StringVar(&o.epoch, "epoch", "", "the epoch --since refers to: the export fails (exit 1, epoch_changed) if the room has another")
	},
	run: runExport,
}

// Export paging.
const (
	// exportPage is the messages asked for per request: the protocol's
	// maximum.
	exportPage = protocol.MaxHistoryReq
	// exportDepth is how many pages are asked for ahead of the one being
	// written, so that the round trips overlap. It bounds the memory:
	// exportDepth pages of at most max_text_bytes per message.
	exportDepth = 8
	// exportRetryMax caps the backoff between retries of a refused page.
	exportRetryMax = 10 * time.Second
)

// exportRecord is the chatctl.export JSON record that ends an export.
type exportRecord struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	Epoch   string `json:"epoch"`
	Oldest  uint64 `json:"oldest"`
	Head    uint64 `json:"head"`
	Since   uint64 `json:"since"`
	First   uint64 `json:"first"`
	Last    uint64 `json:"last"`
	Count   uint64 `json:"count"`
	Removed uint64 `json:"removed"`
}

// retryRecord is the chatctl.retrying JSON record: a request was refused
// with a transient error and is asked again after delay_ms.
type retryRecord struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	Code    string `json:"code"`
	Attempt int    `json:"attempt"`
	DelayMS int64  `json:"delay_ms"`
}

// removedRecord is the chatctl.removed JSON record: messages from..to
// were no longer kept when the export reached them.
type removedRecord struct {
	Type string `json:"type"`
	Room string `json:"room"`
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

func runExport(ctx context.Context, e *env, o *options, args []string) error {
	e.out.json = true // the export is JSON whatever the flags say
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return usageError("export takes no arguments")
	}
	if o.since < 0 {
		return usageError("--since must not be negative")
	}
	if o.epoch != "" && o.since == 0 {
		return usageError("--epoch goes with --since")
	}
	dest, err := openExport(o.out, e.stdout)
	if err != nil {
		return err
	}
	x := &exporter{ctx: ctx, e: e, room: room, since: uint64(o.since), wantEpoch: o.epoch, w: dest, retry: client.NewBackoff()}
	if err := withRetry(ctx, e, o, "exporting "+room, x.run); err != nil {
		dest.abandon()
		return err
	}
	sum := exportRecord{Type: "chatctl.export", Room: room, Epoch: x.epoch, Oldest: x.oldest, Head: x.head,
		Since: x.since, First: x.first, Last: x.last, Count: x.count, Removed: x.removed}
	b, err := json.Marshal(sum)
	if err != nil {
		dest.abandon()
		return fmt.Errorf("encode the export summary: %w", err)
	}
	if _, err := dest.Write(append(b, '\n')); err != nil {
		dest.abandon()
		return ioError(err)
	}
	if err := dest.commit(); err != nil {
		return err
	}
	switch {
	case x.epoch == "":
		fmt.Fprintf(e.stderr, "chatctl: room %s does not exist (no history): nothing exported\n", room)
	case x.count == 0:
		fmt.Fprintf(e.stderr, "chatctl: %s: no messages to export (epoch %s, head %d)\n", room, x.epoch, x.head)
	default:
		fmt.Fprintf(e.stderr, "chatctl: exported %d messages of %s (epoch %s, seq %d..%d; oldest kept %d, head %d; %d removed meanwhile) to %s\n",
			x.count, room, x.epoch, x.first, x.last, x.oldest, x.head, x.removed, dest.name)
	}
	return nil
}

// exportDest is where an export goes: stdout, or a temporary file renamed
// to its name once complete.
type exportDest struct {
	io.Writer
	name string   // for messages
	file *os.File // nil for stdout
	path string   // the file's final name
}

func openExport(path string, stdout io.Writer) (*exportDest, error) {
	if path == "" || path == "-" {
		return &exportDest{Writer: stdout, name: "stdout"}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return nil, &cliError{exit: exitFailure, code: "io", msg: "create the export file", err: err}
	}
	return &exportDest{Writer: f, name: path, file: f, path: path}, nil
}

// commit makes a file export durable and gives it its name.
func (d *exportDest) commit() error {
	if d.file == nil {
		return nil
	}
	err := d.file.Sync()
	if cerr := d.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(d.file.Name(), d.path)
	}
	if err != nil {
		_ = os.Remove(d.file.Name())
		return &cliError{exit: exitFailure, code: "io", msg: "write " + d.path, err: err}
	}
	return nil
}

// abandon removes an incomplete file export.
func (d *exportDest) abandon() {
	if d.file != nil {
		_ = d.file.Close()
		_ = os.Remove(d.file.Name())
	}
}

// exporter walks a room's history from the oldest kept message (or
// --since) up to the head it saw first, one window of seqs per history
// request: `history` pages backwards from "before", so the window lo..hi is
// asked as before=hi+1, limit=hi-lo+1, and seqs being gapless, the answer
// is exactly lo..hi (or what retention left of it). Its state outlives a
// connection: after a reconnect it goes on from next.
type exporter struct {
	ctx       context.Context
	e         *env
	room      string
	since     uint64
	wantEpoch string
	w         io.Writer

	started bool
	epoch   string // "" for a room that does not exist
	oldest  uint64
	head    uint64

	next     uint64 // the first seq not written yet
	first    uint64
	last     uint64
	count    uint64
	removed  uint64
	reqN     int
	retry    client.Backoff
	buf      []byte
	seqProbe struct {
		Seq uint64 `json:"seq"`
	}
}

// exportWindow is one history request of the walk: the messages lo..hi,
// asked as before and limit.
type exportWindow struct {
	lo, hi uint64
	before uint64
	limit  int
	page   *historyPage // the answer, once it came
}

// newWindow is the window of the messages lo..hi.
func newWindow(lo, hi uint64) *exportWindow {
	return &exportWindow{lo: lo, hi: hi, before: hi + 1, limit: int(hi - lo + 1)}
}

// run exports on connection c, from where the export stands.
func (x *exporter) run(c *client.Conn) error {
	lim := pacer(c.Welcome.Limits)
	if !x.started {
		if err := x.probe(c, lim); err != nil {
			return err
		}
	}
	return x.walk(c, lim)
}

// pacer is a token bucket a little under the server's, so that no request
// is refused with rate_limited (every frame costs a token; the hello took
// one already).
func pacer(l protocol.Limits) *rate.Limiter {
	if l.RatePerSecond <= 0 {
		return rate.NewLimiter(rate.Inf, 1)
	}
	return rate.NewLimiter(rate.Limit(l.RatePerSecond*0.9), max(1, l.RateBurst-2))
}

// probe asks for the newest message only, to learn the room's epoch, head
// and oldest kept seq: the snapshot the walk exports.
func (x *exporter) probe(c *client.Conn, lim *rate.Limiter) error {
	w := &exportWindow{before: 0, limit: 1} // the newest message
	id, err := x.ask(c, lim, w)
	if err != nil {
		return err
	}
	byID := map[string]*exportWindow{id: w}
	for w.page == nil {
		f, err := c.Read()
		if err != nil {
			return lostConn(err)
		}
		if err := x.answer(c, lim, f, byID); err != nil {
			return err
		}
	}
	p := w.page
	x.started = true
	x.epoch, x.head, x.oldest = p.Epoch, p.Head, p.Oldest
	if x.wantEpoch != "" && p.Epoch != x.wantEpoch {
		return &cliError{exit: exitFailure, code: "epoch_changed",
			msg: fmt.Sprintf("room %s is in epoch %q, not %q: its sequence numbers started over, --since %d does not apply", x.room, p.Epoch, x.wantEpoch, x.since)}
	}
	if p.Epoch == "" {
		x.next = 1 // nothing to walk: next > head
		return nil
	}
	x.next = max(x.since+1, x.oldest)
	if x.since > 0 && x.since+1 < x.oldest && x.since < x.head {
		x.noteRemoved(x.since+1, min(x.oldest-1, x.head))
	}
	return nil
}

// walk asks for the windows from next up to head, exportDepth ahead of the
// one being written, and writes them in order.
func (x *exporter) walk(c *client.Conn, lim *rate.Limiter) error {
	var (
		queue []*exportWindow // asked for, in seq order; queue[0].lo == next
		byID  = make(map[string]*exportWindow)
		ahead = x.next // the first seq not asked for yet
	)
	for x.next <= x.head {
		for len(queue) < exportDepth && ahead <= x.head {
			w := newWindow(ahead, min(ahead+exportPage-1, x.head))
			ahead = w.hi + 1
			queue = append(queue, w)
			id, err := x.ask(c, lim, w)
			if err != nil {
				return err
			}
			byID[id] = w
		}
		f, err := c.Read()
		if err != nil {
			return lostConn(err)
		}
		if err := x.answer(c, lim, f, byID); err != nil {
			return err
		}
		for len(queue) > 0 && queue[0].page != nil {
			if err := x.write(queue[0]); err != nil {
				return err
			}
			queue = queue[1:]
		}
	}
	return nil
}

// ask sends the history request of w, paced by lim, and returns its id.
func (x *exporter) ask(c *client.Conn, lim *rate.Limiter, w *exportWindow) (string, error) {
	if err := lim.Wait(x.ctx); err != nil {
		return "", lostConn(err)
	}
	x.reqN++
	id := "x" + strconv.Itoa(x.reqN)
	req := protocol.ClientFrame{Type: protocol.TypeHistory, ID: id, Room: x.room, Before: w.before, Limit: w.limit}
	if err := c.Send(req); err != nil {
		return "", lostConn(err)
	}
	return id, nil
}

// answer handles one frame: a history page or a refusal of one of the
// requests in byID (which it asks again, under a new id, when the refusal
// is transient). Other frames are ignored.
func (x *exporter) answer(c *client.Conn, lim *rate.Limiter, f client.Frame, byID map[string]*exportWindow) error {
	switch f.Type {
	case protocol.TypeHistory:
		id := frameID(f)
		w := byID[id]
		if w == nil {
			return nil
		}
		delete(byID, id)
		var p historyPage
		if err := f.Decode(&p); err != nil {
			return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "decode a history page", err: err}
		}
		w.page = &p
		x.retry.Reset()
		return nil
	case protocol.TypeError:
		var pe protocol.Error
		if err := f.Decode(&pe); err != nil {
			return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "decode an error frame", err: err}
		}
		w := byID[pe.ID]
		if w == nil {
			return nil
		}
		delete(byID, pe.ID)
		var delay time.Duration
		switch pe.Code {
		case protocol.CodeRateLimited:
			delay = ratePause(c)
		case protocol.CodeUnavailable, protocol.CodeInternal:
			x.retry.Max = exportRetryMax
			delay = x.retry.Next()
			x.e.out.notice(retryRecord{Type: "chatctl.retrying", Room: x.room, Code: pe.Code, Attempt: x.retry.Attempt(), DelayMS: delay.Milliseconds()},
				"%s: %s (%s); asking again in %v", x.room, pe.Code, pe.Message, delay.Round(time.Millisecond))
		default:
			return serverError(pe)
		}
		if !client.Sleep(x.ctx, delay) {
			return lostConn(x.ctx.Err())
		}
		id, err := x.ask(c, lim, w)
		if err != nil {
			return err
		}
		byID[id] = w
	}
	return nil
}

// write checks the page of w against the snapshot and writes its messages.
func (x *exporter) write(w *exportWindow) error {
	p := w.page
	if p.Epoch != x.epoch {
		return &cliError{exit: exitFailure, code: "epoch_changed",
			msg: fmt.Sprintf("room %s was recreated during the export (epoch %q, then %q): the messages exported so far belong to the old one", x.room, x.epoch, p.Epoch)}
	}
	unexpected := func(format string, args ...any) error {
		return &cliError{exit: exitFailure, code: "unexpected_reply",
			msg: fmt.Sprintf("history of %s for seqs %d..%d: ", x.room, w.lo, w.hi) + fmt.Sprintf(format, args...)}
	}
	x.buf = x.buf[:0]
	var first, prev uint64
	for i, raw := range p.Messages {
		x.seqProbe.Seq = 0
		if err := json.Unmarshal(raw, &x.seqProbe); err != nil {
			return unexpected("message %d: %v", i, err)
		}
		seq := x.seqProbe.Seq
		switch {
		case i == 0 && (seq < w.lo || seq > w.hi):
			return unexpected("first message has seq %d", seq)
		case i > 0 && seq != prev+1:
			return unexpected("seq %d follows %d", seq, prev)
		}
		if i == 0 {
			first = seq
		}
		prev = seq
		x.buf = append(append(x.buf, raw...), '\n')
	}
	switch {
	case len(p.Messages) == 0:
		if p.Oldest <= w.hi {
			return unexpected("no messages, but the oldest kept is %d", p.Oldest)
		}
		x.noteRemoved(w.lo, w.hi)
	case prev != w.hi:
		return unexpected("last message has seq %d", prev)
	case first > w.lo:
		// Only retention may take messages from the front of a window: the
		// page then starts at the oldest kept (or, compaction racing the
		// read, above it).
		if p.Oldest < first {
			return unexpected("messages %d..%d are missing, but the oldest kept is %d", w.lo, first-1, p.Oldest)
		}
		x.noteRemoved(w.lo, first-1)
	}
	if len(x.buf) > 0 {
		if _, err := x.w.Write(x.buf); err != nil {
			return ioError(err)
		}
	}
	if len(p.Messages) > 0 {
		if x.count == 0 {
			x.first = first
		}
		x.last = prev
		x.count += uint64(len(p.Messages))
	}
	x.next = w.hi + 1
	return nil
}

// noteRemoved reports messages that retention removed before the export
// reached them.
func (x *exporter) noteRemoved(from, to uint64) {
	x.removed += to - from + 1
	x.e.out.notice(removedRecord{Type: "chatctl.removed", Room: x.room, From: from, To: to},
		"%s: messages %d..%d are no longer kept (removed by retention)", x.room, from, to)
}
