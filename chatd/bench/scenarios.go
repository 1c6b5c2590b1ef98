package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ringchat/ringchat/chatd/client"
)

// IdleConfig configures Idle.
type IdleConfig struct {
	Options
	// Connections to open, spread round robin over Rooms rooms (and over
	// the URLs).
	Connections int
	Rooms       int
	// Hold is how long the connections stay open, idle, before the
	// server's memory is read again.
	Hold time.Duration
}

// Idle opens Connections connections over Rooms rooms and reports the
// server's resident memory per connection: (RSS after − RSS before) /
// connections opened, plus the Go heap and stacks when /metrics is
// reachable. Start a fresh server for each run: Go rarely returns memory
// to the OS, so a second run on the same server measures less.
func Idle(ctx context.Context, cfg IdleConfig) (*Report, error) {
	if cfg.Connections < 1 || cfg.Rooms < 1 {
		return nil, errors.New("idle needs --connections ≥ 1 and --rooms ≥ 1")
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 1024 // idle connections read only presence and pings
	}
	run, err := newRun("idle", cfg.Options)
	if err != nil {
		return nil, err
	}
	n, capNote := capConnections(cfg.Connections, run.fdLimit)
	if capNote != "" {
		run.notes = append(run.notes, capNote)
	}
	if note := portRangeNote(run.perSource(n / len(run.opts.URLs))); note != "" {
		run.notes = append(run.notes, note)
	}
	rooms := make([]*room, min(cfg.Rooms, n))
	for i := range rooms {
		rooms[i] = run.newRoom(fmt.Sprint("idle-", i))
	}
	specs := make([]connSpec, n)
	for i := range specs {
		specs[i] = connSpec{url: run.opts.URLs[i%len(run.opts.URLs)], room: rooms[i%len(rooms)]}
	}
	rep := run.newReport(map[string]any{"connections": cfg.Connections, "rooms": cfg.Rooms, "hold": cfg.Hold.String()})
	before := run.mark()
	run.connect(ctx, specs)

	run.setPhase("hold")
	stop := run.progress(ctx, func() string { return fmt.Sprintf("open %d", run.openConns()) })
	a := run.mark()
	client.Sleep(ctx, cfg.Hold)
	b := run.mark()
	stop()

	rep.Connections = run.connReport(n)
	rep.Server = run.serverReport(before, a, b)
	if rep.Server != nil && len(run.conns) > 0 && b.server.RSSBytes > 0 {
		rep.Server.RSSPerConnection = (float64(b.server.RSSBytes) - float64(before.server.RSSBytes)) / float64(len(run.conns))
	}
	run.teardown()
	return run.finish(ctx, rep, nil), nil
}

// FanoutConfig configures Fanout.
type FanoutConfig struct {
	Options
	// Subscribers in the one room (the publisher is an extra connection).
	Subscribers int
	// Rates are the steps' target deliveries per second (publish rate ×
	// subscribers). When empty, StartRate, StartRate+StepRate, … up to
	// MaxRate.
	Rates                        []float64
	StartRate, StepRate, MaxRate float64
	// StepDuration is the length of each step.
	StepDuration time.Duration
	// MaxInflight caps the messages published but not yet received by
	// every subscriber; it keeps a saturated server from overflowing the
	// subscribers' queues (close 4008). Keep it well under --send-queue.
	MaxInflight int
	// MaxP99 marks a step as behind when its p99 latency exceeds it.
	MaxP99 time.Duration
	// Rule decides whether a step was sustained: RuleLegacy (the
	// default) or RuleSustain (issue 17: 97% of the target, p99 within
	// MaxP99, p50 not growing within the step).
	Rule StepRule
	// AllSteps keeps stepping after a step fell behind.
	AllSteps bool
	// WriteFloor, when set, is the cost of one loopback write (what
	// calibrate printed): each step then reports its p50 and p99 as
	// multiples of Subscribers × WriteFloor.
	WriteFloor time.Duration
	// ServerRate is the frames per second the server allows one
	// connection (chatd's --rate, 20 by default); a step that asks more
	// messages per second of a publisher is warned about, since chatd
	// refuses the excess with rate_limited. 0: no check.
	ServerRate float64
	// Publishers is the number of publishing connections. 1 (the default)
	// is one extra connection that publishes and does not subscribe: the
	// single-publisher shape. More are that many of the subscribers
	// themselves, sharing the rate round robin: the shape of a live-event
	// room, where many members talk.
	Publishers int
}

// Fanout puts Subscribers connections in one room and publishes into it at
// stepped rates until delivery falls behind (under RuleLegacy: deliveries
// or publishes below 95% of the target, p99 above MaxP99, or a subscriber
// disconnected; RuleSustain asks 97% and a p50 that does not grow within
// the step), and reports each step's sustained deliveries/s and
// publish→receive latency.
func Fanout(ctx context.Context, cfg FanoutConfig) (*Report, error) {
	if cfg.Subscribers < 1 {
		return nil, errors.New("fanout needs --subscribers ≥ 1")
	}
	rates, err := stepRates("fanout", cfg.Rates, cfg.StartRate, cfg.StepRate, cfg.MaxRate)
	if err != nil {
		return nil, err
	}
	if cfg.StepDuration <= 0 {
		cfg.StepDuration = 5 * time.Second
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 1000
	}
	if cfg.MaxP99 <= 0 {
		cfg.MaxP99 = 100 * time.Millisecond
	}
	if cfg.Rule, err = ParseStepRule(string(cfg.Rule)); err != nil {
		return nil, err
	}
	run, err := newRun("fanout", cfg.Options)
	if err != nil {
		return nil, err
	}
	subs, capNote := capConnections(cfg.Subscribers+1, run.fdLimit)
	subs--
	if capNote != "" {
		run.notes = append(run.notes, capNote)
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = 1
	}
	if cfg.Publishers > 1 && cfg.Publishers > subs {
		return nil, fmt.Errorf("fanout: --publishers %d is more than the %d subscribers they are chosen among", cfg.Publishers, subs)
	}
	for _, w := range publisherRateWarnings(rates, subs, cfg.Publishers, cfg.ServerRate) {
		run.note("%s", w)
		if run.opts.Progress != nil {
			fmt.Fprintf(run.opts.Progress, "warning: %s\n", w)
		}
	}
	rm := run.newRoom("fanout")
	specs := make([]connSpec, 0, subs+1)
	for i := 0; i < subs; i++ {
		// Publishers among the subscribers are spread evenly over them.
		publish := cfg.Publishers > 1 && i%(subs/cfg.Publishers) == 0 && i/(subs/cfg.Publishers) < cfg.Publishers
		specs = append(specs, connSpec{url: run.opts.URLs[i%len(run.opts.URLs)], room: rm, track: true, publish: publish})
	}
	if cfg.Publishers == 1 {
		specs = append(specs, connSpec{url: run.opts.URLs[0], room: rm, publish: true})
	}
	rep := run.newReport(map[string]any{
		"subscribers": cfg.Subscribers, "publishers": cfg.Publishers, "rates": rates, "step_duration": cfg.StepDuration.String(),
		"max_inflight": cfg.MaxInflight, "max_p99": cfg.MaxP99.String(), "rule": string(cfg.Rule), "write_floor": cfg.WriteFloor.String(), "text_size": run.opts.TextSize,
		"tick": run.opts.Tick.String(), "warmup": run.opts.Warmup.String(),
	})
	before := run.mark()
	run.connect(ctx, specs)
	if len(rm.pubs) == 0 || len(rm.subs) == 0 {
		rep.Connections = run.connReport(len(specs))
		run.teardown()
		return run.finish(ctx, rep, errors.New("the publisher or every subscriber failed to connect")), nil
	}
	nSubs := float64(len(rm.subs))
	ss := newSchedulers(rm.pubs, 1, run.opts.Tick, run.opts.TextSize)
	ss[0].window = func() int64 {
		minRecv := uint64(math.MaxUint64)
		for _, c := range rm.subs {
			if c.closeCode.Load() != 0 {
				continue
			}
			minRecv = min(minRecv, c.received.Load())
		}
		if minRecv == math.MaxUint64 {
			return 0
		}
		return int64(cfg.MaxInflight) - int64(ss[0].sent.Load()-minRecv)
	}
	plan := make([]stepPlan, len(rates))
	for i, r := range rates {
		plan[i] = stepPlan{publish: r / nSubs, deliveries: r, duration: cfg.StepDuration, rule: cfg.Rule}
	}
	steps, measured := run.traffic(ctx, ss, plan, cfg.MaxP99, !cfg.AllSteps)
	rep.Steps = steps
	rep = run.complete(ctx, rep, len(specs), before, measured)
	if cfg.Rule == RuleSustain {
		// complete recomputed the latencies with every message in,
		// including those still queued when their step ended (the slow
		// end of a growing queue): judge the step again on those. A step
		// stays behind once found behind.
		for i := range rep.Steps {
			s := &rep.Steps[i]
			s.fail(judgeStep(cfg.Rule, s.figures(), cfg.MaxP99))
		}
	}
	applyWriteFloor(rep.Steps, len(rm.subs), cfg.WriteFloor)
	for _, s := range rep.Steps {
		if !s.Behind {
			rep.MaxSustainedDeliveries = max(rep.MaxSustainedDeliveries, s.DeliveriesPerSec)
		}
	}
	return rep, nil
}

// publisherRateWarnings says which steps ask one publisher for more
// messages per second than the server's per-connection rate limit allows:
// a step of rate deliveries/s in a room of subs subscribers publishes
// rate/subs messages/s, shared by pubs publishers. limit 0: no check.
func publisherRateWarnings(rates []float64, subs, pubs int, limit float64) []string {
	if limit <= 0 || subs <= 0 || pubs <= 0 {
		return nil
	}
	var out []string
	for i, r := range rates {
		if each := r / float64(subs) / float64(pubs); each > limit {
			out = append(out, fmt.Sprintf("step %d (%s deliveries/s) asks %d publisher(s) for %.1f messages/s each, above the server's rate limit of %g/s: chatd refuses the excess with rate_limited (and closes a connection that keeps exceeding it); use more --publishers or start chatd with a higher --rate",
				i+1, formatRate(r), pubs, each, limit))
		}
	}
	return out
}

// stepRates returns the explicit rates, or start, start+step, … up to max.
func stepRates(scenario string, rates []float64, start, step, maxRate float64) ([]float64, error) {
	if len(rates) == 0 {
		if start <= 0 || step <= 0 || maxRate < start {
			return nil, fmt.Errorf("%s needs --rates, or --start-rate, --step-rate and --max-rate with max ≥ start", scenario)
		}
		for r := start; r <= maxRate+1e-9; r += step {
			rates = append(rates, r)
		}
	}
	for _, r := range rates {
		if r <= 0 {
			return nil, fmt.Errorf("%s rates must be positive", scenario)
		}
	}
	return rates, nil
}

// RoomsConfig configures Rooms.
type RoomsConfig struct {
	Options
	// Connections, in rooms of RoomSize; each publishes Rate messages/s
	// into its room and receives the room's messages.
	Connections int
	RoomSize    int
	Rate        float64
	// TotalRate, when positive, replaces Rate: the messages per second of
	// all connections together, shared equally (the figure the send→ack
	// latency targets are stated at).
	TotalRate float64
	// Duration of the measured window (after Warmup).
	Duration time.Duration
	// Schedulers is the number of publishing goroutines.
	Schedulers int
	// MaxP99 marks the run as behind when p99 exceeds it.
	MaxP99 time.Duration
	// WriteFloor, when set, is the cost of one loopback write (what
	// calibrate printed): the step then reports its p50 and p99 as
	// multiples of RoomSize × WriteFloor.
	WriteFloor time.Duration
}

// Rooms runs many small rooms where every member publishes, the shape of
// ordinary chat traffic.
func Rooms(ctx context.Context, cfg RoomsConfig) (*Report, error) {
	if cfg.RoomSize < 1 || cfg.Connections < cfg.RoomSize || (cfg.Rate <= 0 && cfg.TotalRate <= 0) {
		return nil, errors.New("rooms needs --room-size ≥ 1, --connections ≥ --room-size and --rate > 0 or --total-rate > 0")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Schedulers <= 0 {
		cfg.Schedulers = 4
	}
	if cfg.MaxP99 <= 0 {
		cfg.MaxP99 = time.Second
	}
	run, err := newRun("rooms", cfg.Options)
	if err != nil {
		return nil, err
	}
	n, capNote := capConnections(cfg.Connections, run.fdLimit)
	n -= n % cfg.RoomSize
	if capNote != "" {
		run.notes = append(run.notes, capNote)
	}
	if note := portRangeNote(run.perSource(n / len(run.opts.URLs))); note != "" {
		run.notes = append(run.notes, note)
	}
	specs := make([]connSpec, n)
	var rm *room
	for i := range specs {
		if i%cfg.RoomSize == 0 {
			rm = run.newRoom(fmt.Sprint("room-", i/cfg.RoomSize))
		}
		specs[i] = connSpec{url: run.opts.URLs[i%len(run.opts.URLs)], room: rm, track: true, publish: true}
	}
	rep := run.newReport(map[string]any{
		"connections": cfg.Connections, "room_size": cfg.RoomSize, "rate_per_connection": cfg.Rate,
		"duration": cfg.Duration.String(), "text_size": run.opts.TextSize, "tick": run.opts.Tick.String(),
		"warmup": run.opts.Warmup.String(), "max_p99": cfg.MaxP99.String(), "total_rate": cfg.TotalRate, "write_floor": cfg.WriteFloor.String(),
	})
	before := run.mark()
	run.connect(ctx, specs)
	var pubs []*conn
	for _, r := range run.rooms {
		pubs = append(pubs, r.pubs...)
	}
	if cfg.TotalRate > 0 && len(pubs) > 0 {
		cfg.Rate = cfg.TotalRate / float64(len(pubs))
		rep.Params["rate_per_connection"] = cfg.Rate
	}
	deliveries := 0.0
	for _, r := range run.rooms {
		deliveries += float64(len(r.pubs)*len(r.subs)) * cfg.Rate
	}
	ss := newSchedulers(pubs, cfg.Schedulers, run.opts.Tick, run.opts.TextSize)
	plan := []stepPlan{{publish: float64(len(pubs)) * cfg.Rate, deliveries: deliveries, duration: cfg.Duration}}
	steps, measured := run.traffic(ctx, ss, plan, cfg.MaxP99, false)
	rep.Steps = steps
	rep = run.complete(ctx, rep, len(specs), before, measured)
	applyWriteFloor(rep.Steps, cfg.RoomSize, cfg.WriteFloor)
	return rep, nil
}

// CrossNodeConfig configures CrossNode.
type CrossNodeConfig struct {
	Options
	Rooms              int
	PublishersPerRoom  int
	SubscribersPerRoom int
	// Rate is messages per second per room.
	Rate     float64
	Duration time.Duration
	MaxP99   time.Duration
}

// CrossNode spreads rooms over the URLs (nodes): each room's publishers
// connect to one node and its subscribers to the others, so that every
// delivery crosses nodes. With a single URL it degenerates to rooms with
// separate publishers and subscribers on one node (a note says so).
func CrossNode(ctx context.Context, cfg CrossNodeConfig) (*Report, error) {
	if cfg.Rooms < 1 || cfg.PublishersPerRoom < 1 || cfg.SubscribersPerRoom < 1 || cfg.Rate <= 0 {
		return nil, errors.New("crossnode needs --rooms, --publishers and --subscribers ≥ 1 and --rate > 0")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.MaxP99 <= 0 {
		cfg.MaxP99 = time.Second
	}
	run, err := newRun("crossnode", cfg.Options)
	if err != nil {
		return nil, err
	}
	urls := run.opts.URLs
	if len(urls) == 1 {
		run.note("only one --url: publishers and subscribers share the node, nothing crosses nodes")
	}
	perRoom := cfg.PublishersPerRoom + cfg.SubscribersPerRoom
	want := cfg.Rooms * perRoom
	n, capNote := capConnections(want, run.fdLimit)
	rooms := n / perRoom
	if capNote != "" {
		run.notes = append(run.notes, capNote+fmt.Sprintf(" (%d rooms instead of %d)", rooms, cfg.Rooms))
	}
	var specs []connSpec
	for r := 0; r < rooms; r++ {
		rm := run.newRoom(fmt.Sprint("x-", r))
		home := r % len(urls)
		for p := 0; p < cfg.PublishersPerRoom; p++ {
			specs = append(specs, connSpec{url: urls[home], room: rm, publish: true})
		}
		for s := 0; s < cfg.SubscribersPerRoom; s++ {
			node := home
			if len(urls) > 1 {
				node = (home + 1 + s%(len(urls)-1)) % len(urls)
			}
			specs = append(specs, connSpec{url: urls[node], room: rm, track: true})
		}
	}
	rep := run.newReport(map[string]any{
		"rooms": cfg.Rooms, "publishers_per_room": cfg.PublishersPerRoom, "subscribers_per_room": cfg.SubscribersPerRoom,
		"rate_per_room": cfg.Rate, "duration": cfg.Duration.String(), "text_size": run.opts.TextSize,
		"tick": run.opts.Tick.String(), "warmup": run.opts.Warmup.String(), "max_p99": cfg.MaxP99.String(),
	})
	before := run.mark()
	run.connect(ctx, specs)
	var pubs []*conn
	deliveries := 0.0
	for _, r := range run.rooms {
		pubs = append(pubs, r.pubs...)
		if len(r.pubs) > 0 {
			deliveries += cfg.Rate * float64(len(r.subs))
		}
	}
	ss := newSchedulers(pubs, 4, run.opts.Tick, run.opts.TextSize)
	plan := []stepPlan{{publish: float64(len(pubs)) / float64(cfg.PublishersPerRoom) * cfg.Rate, deliveries: deliveries, duration: cfg.Duration}}
	steps, measured := run.traffic(ctx, ss, plan, cfg.MaxP99, false)
	rep.Steps = steps
	return run.complete(ctx, rep, len(specs), before, measured), nil
}

// stepPlan is one step: total publish rate, the deliveries it should
// produce, and its length. When acked is positive the step is also behind
// if fewer acks than that per second came back, and when ackP99 is, if the
// send→ack p99 exceeded it.
type stepPlan struct {
	publish    float64
	deliveries float64
	duration   time.Duration
	acked      float64
	ackP99     time.Duration
	// rule judges the step's rates and latencies (zero: RuleLegacy).
	rule StepRule
}

// measuredSpan is the first and last mark of the measured steps.
type measuredSpan struct {
	first, last window
	ok          bool
}

// traffic runs the warm-up and then each step, stopping after a step that
// fell behind when stopWhenBehind. It leaves the schedulers stopped.
func (r *runState) traffic(ctx context.Context, ss schedulers, plan []stepPlan, maxP99 time.Duration, stopWhenBehind bool) ([]StepReport, measuredSpan) {
	pubs := 0
	for _, s := range ss {
		pubs += len(s.pubs)
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	ss.start(sctx, r, &wg)

	var lastPub, lastDeliv uint64
	lastAt := time.Now()
	stop := r.progress(ctx, func() string {
		now := time.Now()
		dt := now.Sub(lastAt).Seconds()
		p, d := r.published.Load(), r.delivered.Load()
		line := fmt.Sprintf("pub %s/s deliv %s/s open %d closed %d", formatRate(float64(p-lastPub)/dt), formatRate(float64(d-lastDeliv)/dt), r.openConns(), len(r.conns)-r.openConns())
		lastPub, lastDeliv, lastAt = p, d, now
		return line
	})
	defer stop()

	if r.opts.Warmup > 0 && len(plan) > 0 {
		r.setPhase("warm-up")
		ss.set(plan[0].publish, 0, pubs)
		if !client.Sleep(ctx, r.opts.Warmup) {
			return nil, measuredSpan{}
		}
	}
	var (
		steps []StepReport
		span  measuredSpan
	)
	for i, p := range plan {
		r.setPhase(fmt.Sprintf("step %d/%d at %s deliveries/s", i+1, len(plan), formatRate(p.deliveries)))
		closedBefore := len(r.conns) - r.openConns()
		refusedBefore := r.refused.Load()
		ss.set(p.publish, i+1, pubs)
		a := r.mark()
		// The second half's messages are stamped apart, so that a
		// latency growing within the step can be seen (the sustain rule).
		completed := client.Sleep(ctx, p.duration/2)
		if completed {
			ss.restamp(halfStamp(i + 1))
			completed = client.Sleep(ctx, p.duration-p.duration/2)
		}
		b := r.mark()
		if !span.ok {
			span.first, span.ok = a, true
		}
		span.last = b
		s := StepReport{Step: i + 1, TargetPublishPerSec: p.publish, TargetDeliveriesPerSec: p.deliveries}
		r.fillStep(&s, a, b)
		r.stepLatency(&s)
		fails := judgeStep(p.rule, s.figures(), maxP99)
		if p.acked > 0 && s.AckedPerSec < 0.95*p.acked {
			fails = append(fails, stepFailure{condAcked, fmt.Sprintf("acked %s/s of %s/s", formatRate(s.AckedPerSec), formatRate(p.acked))})
		}
		if p.ackP99 > 0 && s.AckLatency != nil {
			if p99 := time.Duration(s.AckLatency.P99MS * float64(time.Millisecond)); p99 > p.ackP99 {
				fails = append(fails, stepFailure{condAckP99, fmt.Sprintf("ack p99 %v above %v", p99.Round(100*time.Microsecond), p.ackP99)})
			}
		}
		if n := r.refused.Load() - refusedBefore; n > 0 {
			fails = append(fails, stepFailure{condRefused, fmt.Sprintf("%d sends refused", n)})
		}
		if closed := len(r.conns) - r.openConns(); closed > closedBefore {
			fails = append(fails, stepFailure{condClosed, fmt.Sprintf("%d connections closed by the server", closed-closedBefore)})
		}
		if !completed {
			fails = append(fails, stepFailure{condInterrupted, "interrupted"})
		}
		s.fail(fails)
		steps = append(steps, s)
		if !completed || (s.Behind && stopWhenBehind) {
			break
		}
	}
	ss.set(0, 0, pubs)
	return steps, span
}

// complete drains, tears down, recomputes the steps' latencies with every
// sample in, and fills the report.
func (r *runState) complete(ctx context.Context, rep *Report, requested int, before window, span measuredSpan) *Report {
	drained := r.drain(ctx)
	after := r.mark()
	rep.Connections = r.connReport(requested)
	if span.ok {
		rep.Server = r.serverReport(before, span.first, span.last)
		if rep.Server != nil {
			rep.Server.RSSAfterBytes = after.server.RSSBytes
		}
	} else {
		rep.Server = r.serverReport(before, before, after)
	}
	r.teardown()
	for i := range rep.Steps {
		r.stepLatency(&rep.Steps[i])
	}
	rep.Integrity = r.integrity()
	var err error
	if !drained {
		err = fmt.Errorf("not every message arrived within --drain %v", r.opts.Drain)
	}
	return r.finish(ctx, rep, err)
}

// stepLatency fills s's latency figures from the samples recorded so far:
// the whole step's, its two halves' p50 and send→ack.
func (r *runState) stepLatency(s *StepReport) {
	s.Latency = latencyReport(r.lat.merged(s.Step))
	s.AckLatency = r.ackReport(s.Step)
	s.FirstHalfP50MS = halfP50(r.lat.half(s.Step, false))
	s.SecondHalfP50MS = halfP50(r.lat.half(s.Step, true))
}

// halfP50 is h's median in milliseconds, nil when h is empty.
func halfP50(h *hdrhistogram.Histogram) *float64 {
	if h.TotalCount() == 0 {
		return nil
	}
	ms := float64(h.ValueAtQuantile(50)) / 1000
	return &ms
}

// ackReport is the send→ack latency of a step's sends, nil when the step
// sent nothing that was acked.
func (r *runState) ackReport(step int) *LatencyReport {
	h := r.ackLat.merged(step)
	if h.TotalCount() == 0 {
		return nil
	}
	l := latencyReport(h)
	return &l
}

// newReport starts a report.
func (r *runState) newReport(params map[string]any) *Report {
	return &Report{FormatVersion: FormatVersion, Scenario: r.scenario, Started: r.started, URLs: r.opts.URLs, Params: params}
}

// serverReport builds the server section: RSS before the connections and
// after, CPU over the window a→b.
func (r *runState) serverReport(before, a, b window) *ServerReport {
	if r.stats.source == "none" {
		return nil
	}
	s := &ServerReport{Source: r.stats.source, PID: r.stats.pid,
		RSSBeforeBytes: before.server.RSSBytes, RSSAfterBytes: b.server.RSSBytes,
		HeapInuseBeforeBytes: before.server.HeapInuseBytes, HeapInuseAfterBytes: b.server.HeapInuseBytes,
		StackInuseBeforeBytes: before.server.StackInuseBytes, StackInuseAfterBytes: b.server.StackInuseBytes,
		GoroutinesBefore: before.server.Goroutines, GoroutinesAfter: b.server.Goroutines}
	if dt := b.at.Sub(a.at).Seconds(); dt > 0 && a.serverErr == nil && b.serverErr == nil {
		cpu := 100 * (b.server.CPUSeconds - a.server.CPUSeconds) / dt
		s.CPUPercent = &cpu
	}
	if before.serverErr != nil || b.serverErr != nil {
		r.note("reading the server's figures failed: %v", errors.Join(before.serverErr, b.serverErr))
	}
	return s
}

// finish sets the notes, the duration and the verdict.
func (r *runState) finish(ctx context.Context, rep *Report, err error) *Report {
	if err != nil {
		r.note("%v", err)
	}
	if ctx.Err() != nil {
		r.note("%v before the end: figures cover only part of the run", errInterrupted)
	}
	if rep.Connections.Failed > 0 {
		r.note("%d connections failed to open, e.g. %v", rep.Connections.Failed, rep.Connections.FailureSamples)
	}
	if n := r.slowParses.Load(); n > 0 {
		r.note("%d message frames did not match the fast parser and were decoded with encoding/json", n)
	}
	rep.Notes = append([]string{}, r.notes...)
	rep.Seconds = time.Since(r.started).Seconds()
	rep.OK = err == nil && ctx.Err() == nil && rep.Connections.Failed == 0 && len(rep.Connections.ClosedByServer) == 0 &&
		rep.Consistent()
	return rep
}
