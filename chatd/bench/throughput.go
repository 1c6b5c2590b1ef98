package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ThroughputConfig configures Throughput.
type ThroughputConfig struct {
	Options
	// Rooms to publish into; each has one connection that publishes into
	// it and reads its messages back (the delivery check).
	Rooms int
	// Window is the most sends one connection may have written and not
	// yet seen acked: publishers pipeline up to it, as a busy client does.
	Window int
	// Rates are the steps' target messages per second over all rooms.
	// When empty, StartRate, StartRate+StepRate, … up to MaxRate.
	Rates                        []float64
	StartRate, StepRate, MaxRate float64
	// StepDuration is the length of each step.
	StepDuration time.Duration
	// MaxP99 is the bound on the step's send→ack p99 (and publish→receive
	// p99) for the step to count as sustained.
	MaxP99 time.Duration
	// AllSteps keeps stepping after a step fell behind.
	AllSteps bool
	// Schedulers is the number of publishing goroutines.
	Schedulers int
}

// Throughput measures the sustained publish rate: Rooms rooms, one
// pipelining publisher each (at most Window sends unacked), stepped total
// rates. A step is sustained when publishes and acks keep up with its
// target (95%), send→ack p99 stays under MaxP99, nothing is refused and no
// connection is closed; the report gives the highest such acked rate. With
// --data-dir on the server this is the durable publish rate, which group
// commit (many messages sharing one fsync) makes possible.
func Throughput(ctx context.Context, cfg ThroughputConfig) (*Report, error) {
	if cfg.Rooms < 1 {
		return nil, errors.New("throughput needs --rooms ≥ 1")
	}
	rates, err := stepRates("throughput", cfg.Rates, cfg.StartRate, cfg.StepRate, cfg.MaxRate)
	if err != nil {
		return nil, err
	}
	if cfg.StepDuration <= 0 {
		cfg.StepDuration = 5 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 16
	}
	if cfg.MaxP99 <= 0 {
		cfg.MaxP99 = 50 * time.Millisecond
	}
	if cfg.Schedulers <= 0 {
		cfg.Schedulers = 4
	}
	run, err := newRun("throughput", cfg.Options)
	if err != nil {
		return nil, err
	}
	n, capNote := capConnections(cfg.Rooms, run.fdLimit)
	if capNote != "" {
		run.notes = append(run.notes, capNote+fmt.Sprintf(" (%d rooms instead of %d)", n, cfg.Rooms))
	}
	if note := portRangeNote(run.perSource(n / len(run.opts.URLs))); note != "" {
		run.notes = append(run.notes, note)
	}
	specs := make([]connSpec, n)
	for i := range specs {
		rm := run.newRoom(fmt.Sprint("tp-", i))
		specs[i] = connSpec{url: run.opts.URLs[i%len(run.opts.URLs)], room: rm, track: true, publish: true}
	}
	rep := run.newReport(map[string]any{
		"rooms": cfg.Rooms, "window": cfg.Window, "rates": rates, "step_duration": cfg.StepDuration.String(),
		"max_p99": cfg.MaxP99.String(), "text_size": run.opts.TextSize, "tick": run.opts.Tick.String(),
		"warmup": run.opts.Warmup.String(), "schedulers": cfg.Schedulers,
	})
	before := run.mark()
	run.connect(ctx, specs)
	var pubs []*conn
	for _, r := range run.rooms {
		pubs = append(pubs, r.pubs...)
	}
	if len(pubs) == 0 {
		rep.Connections = run.connReport(len(specs))
		run.teardown()
		return run.finish(ctx, rep, errors.New("no publisher connected")), nil
	}
	ss := newSchedulers(pubs, cfg.Schedulers, run.opts.Tick, run.opts.TextSize)
	for _, s := range ss {
		s.connWindow = int64(cfg.Window)
	}
	plan := make([]stepPlan, len(rates))
	for i, r := range rates {
		plan[i] = stepPlan{publish: r, deliveries: r, duration: cfg.StepDuration, acked: r, ackP99: cfg.MaxP99}
	}
	steps, measured := run.traffic(ctx, ss, plan, cfg.MaxP99, !cfg.AllSteps)
	rep.Steps = steps
	rep = run.complete(ctx, rep, len(specs), before, measured)
	// complete recomputed the latencies with every sample in, including
	// acks that came after their step ended: judge the bound on those.
	for i := range rep.Steps {
		s := &rep.Steps[i]
		if a := s.AckLatency; a != nil && !s.Behind {
			if p99 := time.Duration(a.P99MS * float64(time.Millisecond)); p99 > cfg.MaxP99 {
				s.fail([]stepFailure{{condAckP99, fmt.Sprintf("ack p99 %v above %v (with the acks that came after the step)", p99.Round(100*time.Microsecond), cfg.MaxP99)}})
			}
		}
		if !s.Behind {
			rep.MaxSustainedAcked = max(rep.MaxSustainedAcked, s.AckedPerSec)
		}
	}
	if rep.MaxSustainedAcked == 0 {
		run.note("no step was sustained")
		rep.Notes = append([]string{}, run.notes...)
	}
	return rep, nil
}
