package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// HistoryConfig configures History.
type HistoryConfig struct {
	Options
	// Rooms named RoomName(RoomPrefix, 0 … Rooms-1) are read (as Fill
	// wrote them). MessagesPerRoom, when positive, is the head every page
	// must report (every message the fill wrote must be there); zero: not
	// checked, the first page of each room is its newest.
	Rooms           int
	RoomPrefix      string
	MessagesPerRoom int
	// Limit is the page size asked for (1–200).
	Limit int
	// Requests to send; zero: one per room, each room once in random
	// order (every page is then a cold room's first page).
	Requests int
	// Rate is the requests per second, spread over Connections (open loop:
	// requests go out on the clock whatever the latency). MaxInflight caps
	// the requests one connection has waiting; a request due when every
	// connection is at the cap is skipped and counted.
	Rate        float64
	Connections int
	MaxInflight int
	// WaitCold, when positive, waits up to this long before reading for
	// the servers to hold no room in memory (after a fill the rooms leave
	// memory --room-idle-ttl after their last member), so that each room's
	// first page is read from disk.
	WaitCold time.Duration
}

// HistoryReport is what History read.
type HistoryReport struct {
	RoomPrefix      string `json:"room_prefix"`
	Rooms           int    `json:"rooms"`
	MessagesPerRoom int    `json:"messages_per_room"`
	Limit           int    `json:"limit"`
	// RoomsInMemoryAtStart is what the nodes' metrics said just before the
	// first request (-1: unknown). Zero means every first page was read
	// from disk.
	RoomsInMemoryAtStart int64   `json:"rooms_in_memory_at_start"`
	WaitedCold           bool    `json:"waited_cold"`
	ColdWaitSeconds      float64 `json:"cold_wait_seconds,omitempty"`
	Requests             uint64  `json:"requests"`
	Pages                uint64  `json:"pages"`
	// BadPages are pages that were not exactly the messages asked for:
	// wrong head (a message missing), a gap, a wrong sequence number or
	// room, a room without history.
	BadPages   uint64  `json:"bad_pages"`
	Errors     uint64  `json:"errors"`
	Unanswered uint64  `json:"unanswered"`
	Skipped    uint64  `json:"skipped"`
	RoomsRead  int     `json:"rooms_read"`
	Seconds    float64 `json:"seconds"`
	// PagesPerSec is pages over the reading time.
	PagesPerSec float64 `json:"pages_per_sec"`
	// Cold is request→page latency of each room's first page in the run
	// (a room not in memory when RoomsInMemoryAtStart is 0); Warm of the
	// later pages of rooms already read.
	Cold     LatencyReport  `json:"cold"`
	Warm     *LatencyReport `json:"warm,omitempty"`
	Problems []string       `json:"problems,omitempty"`
	// Clean is false when a page was wrong.
	Clean bool `json:"clean"`
}

// History reads history pages of rooms a fill wrote, with a random `before`
// each, at a steady request rate over several connections, and reports
// request→page latency: of each room's first page (cold: read from disk
// when the room is not in memory, e.g. after a restart or once the rooms
// passed --room-idle-ttl; WaitCold waits for that) and of later pages.
// Every page is checked against what the fill wrote.
func History(ctx context.Context, cfg HistoryConfig) (*Report, error) {
	if cfg.Rooms < 1 {
		return nil, errors.New("history needs --rooms ≥ 1")
	}
	if err := checkPrefix(cfg.RoomPrefix); err != nil {
		return nil, err
	}
	if cfg.Limit == 0 {
		cfg.Limit = 50
	}
	if cfg.Limit < 1 || cfg.Limit > protocol.MaxHistoryReq {
		return nil, fmt.Errorf("history --limit must be 1–%d", protocol.MaxHistoryReq)
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 8
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 16
	}
	if cfg.Requests < 0 || cfg.MessagesPerRoom < 0 {
		return nil, errors.New("history --requests and --messages-per-room must not be negative")
	}
	run, err := newRun("history", cfg.Options)
	if err != nil {
		return nil, err
	}
	n, capNote := capConnections(cfg.Connections, run.fdLimit)
	if capNote != "" {
		run.notes = append(run.notes, capNote)
	}
	requests := cfg.Requests
	if requests == 0 {
		requests = cfg.Rooms
	}
	rep := run.newReport(map[string]any{
		"rooms": cfg.Rooms, "room_prefix": cfg.RoomPrefix, "messages_per_room": cfg.MessagesPerRoom, "limit": cfg.Limit,
		"requests": requests, "rate": cfg.Rate, "connections": cfg.Connections, "max_inflight": cfg.MaxInflight,
		"wait_cold": cfg.WaitCold.String(),
	})
	hr := &HistoryReport{RoomPrefix: cfg.RoomPrefix, Rooms: cfg.Rooms, MessagesPerRoom: cfg.MessagesPerRoom, Limit: cfg.Limit, RoomsInMemoryAtStart: -1}
	rep.History = hr
	h := newHistoryRun(cfg, run)

	before := run.mark()
	conns := h.connect(ctx, n)
	rep.Connections = ConnReport{Requested: n, Opened: len(conns), Failed: n - len(conns), FailureSamples: h.dialErrs, ConnectSeconds: h.connectSeconds}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	if len(conns) == 0 {
		return run.finish(ctx, rep, errors.New("no connection opened")), nil
	}

	scraper := newMetricsScraper(run.opts, run.stats)
	if cfg.WaitCold > 0 {
		run.setPhase("waiting for the rooms to leave memory")
		stop := run.progress(ctx, func() string { return "" })
		start := time.Now()
		left, gone, err := scraper.waitRoomsGone(ctx, 0, cfg.WaitCold, 500*time.Millisecond)
		stop()
		hr.WaitedCold, hr.ColdWaitSeconds = true, time.Since(start).Seconds()
		if err != nil {
			return run.finish(ctx, rep, err), nil
		}
		if !gone {
			run.note("%d rooms still in memory after --wait-cold %v: some first pages may come from memory", left, cfg.WaitCold)
		}
	}
	if inMem, err := scraper.roomsInMemory(); err == nil {
		hr.RoomsInMemoryAtStart = int64(inMem)
	} else {
		run.note("cannot tell whether the rooms were in memory: %v", err)
	}

	run.setPhase("reading")
	stop := run.progress(ctx, h.status)
	start := time.Now()
	a := run.mark()
	h.drive(ctx, conns, requests)
	run.setPhase("drain")
	drained := h.drain(ctx, conns)
	elapsed := time.Since(start)
	b := run.mark()
	stop()
	for _, c := range conns {
		c.close()
	}
	rep.Server = run.serverReport(before, a, b)
	rep.Connections.ClosedByServer = h.closeCodes(conns)
	h.fill(hr, elapsed)
	var runErr error
	switch {
	case !drained:
		runErr = fmt.Errorf("%d requests unanswered after --drain %v", hr.Unanswered, run.opts.Drain)
	case hr.Errors > 0:
		runErr = fmt.Errorf("%d requests answered with an error frame (%s)", hr.Errors, formatCodes64(run.errorsCopy()))
	}
	if hr.Skipped > 0 {
		run.note("%d requests skipped: every connection had --max-inflight requests waiting (the server did not keep up with --rate)", hr.Skipped)
	}
	return run.finish(ctx, rep, runErr), nil
}

// historyRun is one History run's shared state.
type historyRun struct {
	cfg  HistoryConfig
	run  *runState
	rng  *rand.Rand // scheduler goroutine only
	seen []bool     // rooms already asked (scheduler goroutine only)
	// order is the rooms in the order they are read when each room is
	// read once.
	order []int

	sent      atomic.Uint64
	pages     atomic.Uint64
	bad       atomic.Uint64
	errs      atomic.Uint64
	skipped   atomic.Uint64
	roomsRead int
	dialErrs  []string

	mu       sync.Mutex
	cold     *hdrhistogram.Histogram
	warm     *hdrhistogram.Histogram
	heads    map[int]uint64 // learned heads, when MessagesPerRoom is 0
	problems []string

	connectSeconds float64
}

func newHistoryRun(cfg HistoryConfig, run *runState) *historyRun {
	h := &historyRun{cfg: cfg, run: run, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		seen: make([]bool, cfg.Rooms), cold: newHistogram(), warm: newHistogram(), heads: map[int]uint64{}}
	if cfg.Requests == 0 {
		h.order = h.rng.Perm(cfg.Rooms)
	}
	return h
}

func (h *historyRun) status() string {
	return fmt.Sprintf("requests %d pages %d bad %d errors %d skipped %d", h.sent.Load(), h.pages.Load(), h.bad.Load(), h.errs.Load(), h.skipped.Load())
}

func (h *historyRun) problem(format string, args ...any) {
	h.mu.Lock()
	if len(h.problems) < 10 {
		h.problems = append(h.problems, fmt.Sprintf(format, args...))
	}
	h.mu.Unlock()
}

// connect opens n reading connections (hello only, no join: history
// needs none).
func (h *historyRun) connect(ctx context.Context, n int) []*pageConn {
	start := time.Now()
	var (
		mu  sync.Mutex
		out []*pageConn
		wg  sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dc := h.run.dialConfig(i)
			dctx, cancel := context.WithTimeout(ctx, dc.timeout)
			ws, err := dialHello(dctx, h.run.opts.URLs[i%len(h.run.opts.URLs)], fmt.Sprintf("b%s-read-%d", h.run.id, i), dc)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if len(h.dialErrs) < 5 {
					h.dialErrs = append(h.dialErrs, err.Error())
				}
				return
			}
			out = append(out, newPageConn(ws, h))
		}()
	}
	wg.Wait()
	h.connectSeconds = time.Since(start).Seconds()
	return out
}

// drive sends the requests on the clock: every tick, the ones due since
// the start.
func (h *historyRun) drive(ctx context.Context, conns []*pageConn, requests int) {
	t := time.NewTicker(h.run.opts.Tick)
	defer t.Stop()
	start := time.Now()
	issued, next := 0, 0
	for issued < requests {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := min(int(now.Sub(start).Seconds()*h.cfg.Rate), requests) - issued
			for range due {
				issued++
				c := pickPageConn(conns, &next, int64(h.cfg.MaxInflight))
				if c == nil {
					h.skipped.Add(1)
					continue
				}
				idx, before, cold := h.nextRequest(issued - 1)
				if err := c.request(RoomName(h.cfg.RoomPrefix, idx), idx, before, h.cfg.Limit, cold); err != nil {
					h.problem("request: %v", err)
					h.errs.Add(1)
					continue
				}
				h.sent.Add(1)
			}
		}
	}
}

// nextRequest picks the i-th request's room and `before`.
func (h *historyRun) nextRequest(i int) (idx int, before uint64, cold bool) {
	if h.order != nil {
		idx = h.order[i%len(h.order)]
	} else {
		idx = h.rng.IntN(h.cfg.Rooms)
	}
	cold = !h.seen[idx]
	if cold {
		h.roomsRead++
	}
	h.seen[idx] = true
	head := uint64(h.cfg.MessagesPerRoom)
	if head == 0 {
		h.mu.Lock()
		head = h.heads[idx]
		h.mu.Unlock()
	}
	if head == 0 {
		return idx, 0, cold // the newest page
	}
	// A page ending anywhere in the history: before in [2, head+1].
	return idx, 2 + h.rng.Uint64N(head), cold
}

func pickPageConn(conns []*pageConn, next *int, maxInflight int64) *pageConn {
	for range conns {
		c := conns[*next]
		*next = (*next + 1) % len(conns)
		if c.outstanding.Load() < maxInflight && !c.closed.Load() {
			return c
		}
	}
	return nil
}

// drain waits until every request is answered, or Drain passes.
func (h *historyRun) drain(ctx context.Context, conns []*pageConn) bool {
	deadline := time.Now().Add(h.run.opts.Drain)
	for {
		var out int64
		for _, c := range conns {
			out += c.outstanding.Load()
		}
		if out == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answer records one answered request.
func (h *historyRun) answer(req pageReq, page *protocol.HistoryPage, now int64, errFrame *protocol.Error) {
	if errFrame != nil {
		h.errs.Add(1)
		h.run.countError(errFrame.Code)
		h.problem("room %s before %d: error %s: %s", req.room, req.before, errFrame.Code, errFrame.Message)
		return
	}
	h.pages.Add(1)
	if err := checkPage(page, req.room, req.before, h.cfg.Limit, uint64(h.cfg.MessagesPerRoom)); err != nil {
		h.bad.Add(1)
		h.problem("room %s before %d: %v", req.room, req.before, err)
	}
	micros := max((now-req.sentNs)/1000, 1)
	h.mu.Lock()
	if req.cold {
		_ = h.cold.RecordValue(min(micros, latencyMaxMicros))
	} else {
		_ = h.warm.RecordValue(min(micros, latencyMaxMicros))
	}
	if h.cfg.MessagesPerRoom == 0 && page.Head > 0 {
		h.heads[req.idx] = page.Head
	}
	h.mu.Unlock()
}

// fill completes the report after the readers have stopped.
func (h *historyRun) fill(hr *HistoryReport, elapsed time.Duration) {
	hr.Requests, hr.Pages, hr.BadPages, hr.Errors, hr.Skipped = h.sent.Load(), h.pages.Load(), h.bad.Load(), h.errs.Load(), h.skipped.Load()
	if answered := hr.Pages + hr.Errors; hr.Requests > answered {
		hr.Unanswered = hr.Requests - answered
	}
	hr.RoomsRead = h.roomsRead
	hr.Seconds = elapsed.Seconds()
	if elapsed > 0 {
		hr.PagesPerSec = float64(hr.Pages) / elapsed.Seconds()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hr.Cold = latencyReport(h.cold)
	if h.warm.TotalCount() > 0 {
		w := latencyReport(h.warm)
		hr.Warm = &w
	}
	hr.Problems = h.problems
	hr.Clean = hr.BadPages == 0
}

func (h *historyRun) closeCodes(conns []*pageConn) map[string]int {
	out := map[string]int{}
	for _, c := range conns {
		switch code := c.closeCode.Load(); {
		case code == 0:
		case code < 0:
			out["network"]++
		default:
			out[fmt.Sprint(code)]++
		}
	}
	return out
}

// checkPage checks a history page against the request: the room's head
// when known (wantHead > 0: every message written is there, and none was
// removed, oldest 1), and exactly the messages below before, ascending,
// gapless, limit of them or down to the oldest kept.
func checkPage(p *protocol.HistoryPage, room string, before uint64, limit int, wantHead uint64) error {
	if p.Type != protocol.TypeHistory || p.Room != room {
		return fmt.Errorf("answer for room %q (type %q)", p.Room, p.Type)
	}
	if p.Epoch == "" {
		if wantHead > 0 {
			return errors.New("the room has no history (empty epoch)")
		}
		if len(p.Messages) > 0 {
			return fmt.Errorf("%d messages in a page without an epoch", len(p.Messages))
		}
		return nil
	}
	if wantHead > 0 && p.Head != wantHead {
		return fmt.Errorf("head %d, want %d", p.Head, wantHead)
	}
	if wantHead > 0 && p.Oldest != 1 {
		return fmt.Errorf("oldest %d, want 1 (messages removed)", p.Oldest)
	}
	oldest := max(p.Oldest, 1)
	end := before
	if end == 0 || end > p.Head+1 {
		end = p.Head + 1
	}
	want := 0
	if end > oldest {
		want = int(min(uint64(limit), end-oldest))
	}
	if len(p.Messages) != want {
		return fmt.Errorf("%d messages, want %d (below %d, oldest %d, limit %d)", len(p.Messages), want, end, oldest, limit)
	}
	first := end - uint64(want)
	for i, m := range p.Messages {
		if m.Seq != first+uint64(i) {
			return fmt.Errorf("message %d has seq %d, want %d", i, m.Seq, first+uint64(i))
		}
		if m.Room != room || m.Type != protocol.TypeMessage {
			return fmt.Errorf("message %d is a %q of room %q", i, m.Type, m.Room)
		}
	}
	if wantMore := want > 0 && first > oldest; p.More != wantMore {
		return fmt.Errorf("more %v, want %v", p.More, wantMore)
	}
	return nil
}
