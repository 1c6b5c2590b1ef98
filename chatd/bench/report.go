package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// FormatVersion is the version of the JSON report; it changes only when a
// member is removed or changes meaning.
const FormatVersion = 1

// Report is the result of one scenario run; it is what `chatbench --json`
// prints.
type Report struct {
	FormatVersion int            `json:"format_version"`
	Scenario      string         `json:"scenario"`
	Started       time.Time      `json:"started"`
	Seconds       float64        `json:"seconds"`
	URLs          []string       `json:"urls"`
	Params        map[string]any `json:"params"`
	// Notes explain anything that limits the figures (file limit caps,
	// connect failures, missing server stats, an interrupted run).
	Notes       []string      `json:"notes"`
	Connections ConnReport    `json:"connections"`
	Server      *ServerReport `json:"server,omitempty"`
	// Steps are fanout's rate steps; rooms and crossnode have one, the
	// measured window.
	Steps []StepReport `json:"steps,omitempty"`
	// MaxSustainedDeliveries is fanout's highest delivery rate over the
	// steps that kept up.
	MaxSustainedDeliveries float64 `json:"max_sustained_deliveries_per_sec,omitempty"`
	// MaxSustainedAcked is throughput's highest acked (stored) message
	// rate over the steps that kept up.
	MaxSustainedAcked float64    `json:"max_sustained_acked_per_sec,omitempty"`
	Integrity         *Integrity `json:"integrity,omitempty"`
	// Fill, History, Ready and Storm are those scenarios' own sections.
	Fill    *FillReport    `json:"fill,omitempty"`
	History *HistoryReport `json:"history,omitempty"`
	Ready   *ReadyReport   `json:"ready,omitempty"`
	Storm   *StormReport   `json:"storm,omitempty"`
	// Calibrate is the calibrate scenario's section: the cost of one
	// loopback write on this machine.
	Calibrate *CalibrateReport `json:"calibrate,omitempty"`
	// OK is false when a message was lost, duplicated, reordered or wrong
	// in a page (Consistent), a connection failed or was closed by the
	// server, or the run was interrupted.
	OK bool `json:"ok"`
}

// ConnReport describes the connections of a run.
type ConnReport struct {
	Requested      int            `json:"requested"`
	Opened         int            `json:"opened"`
	Failed         int            `json:"failed"`
	FailureSamples []string       `json:"failure_samples,omitempty"`
	ConnectSeconds float64        `json:"connect_seconds"`
	ClosedByServer map[string]int `json:"closed_by_server"`
}

// ServerReport is what was measured of the server process.
type ServerReport struct {
	Source           string  `json:"source"`
	PID              int     `json:"pid,omitempty"`
	RSSBeforeBytes   uint64  `json:"rss_before_bytes"`
	RSSAfterBytes    uint64  `json:"rss_after_bytes"`
	RSSPerConnection float64 `json:"rss_per_connection_bytes,omitempty"`
	// Go runtime figures from /metrics (0 when unavailable).
	HeapInuseBeforeBytes  uint64   `json:"heap_inuse_before_bytes,omitempty"`
	HeapInuseAfterBytes   uint64   `json:"heap_inuse_after_bytes,omitempty"`
	StackInuseBeforeBytes uint64   `json:"stack_inuse_before_bytes,omitempty"`
	StackInuseAfterBytes  uint64   `json:"stack_inuse_after_bytes,omitempty"`
	GoroutinesBefore      uint64   `json:"goroutines_before,omitempty"`
	GoroutinesAfter       uint64   `json:"goroutines_after,omitempty"`
	CPUPercent            *float64 `json:"cpu_percent,omitempty"`
}

// StepReport is one measured window at one publish rate.
type StepReport struct {
	Step                   int     `json:"step"`
	Seconds                float64 `json:"seconds"`
	TargetPublishPerSec    float64 `json:"target_publish_per_sec"`
	PublishPerSec          float64 `json:"publish_per_sec"`
	TargetDeliveriesPerSec float64 `json:"target_deliveries_per_sec"`
	DeliveriesPerSec       float64 `json:"deliveries_per_sec"`
	// Latency is publish→receive of the messages sent in this step.
	Latency LatencyReport `json:"latency"`
	// AckedPerSec is the rate of acks (messages stored) in the step.
	AckedPerSec float64 `json:"acked_per_sec"`
	// AckLatency is send→ack of the step's sends: the time from writing a
	// send to reading its ack (with --data-dir, the ack waits for the
	// message to be on disk on every copy). Nil when nothing was acked.
	AckLatency *LatencyReport `json:"ack_latency,omitempty"`
	// StoreSync is the first server's group commits in the step (with
	// --data-dir and /metrics).
	StoreSync *StoreSyncReport `json:"store_sync,omitempty"`
	// CPU figures are percent of one core: the server's, chatbench's own,
	// the whole machine's (all cores, so up to 100 × cores) and what
	// remains (other processes, kernel work not charged to either). A
	// high OtherCPUPercent means the figures were disturbed.
	ServerCPUPercent  *float64 `json:"server_cpu_percent,omitempty"`
	ClientCPUPercent  float64  `json:"client_cpu_percent"`
	MachineCPUPercent *float64 `json:"machine_cpu_percent,omitempty"`
	OtherCPUPercent   *float64 `json:"other_cpu_percent,omitempty"`
	// FirstHalfP50MS and SecondHalfP50MS are the p50 publish→receive
	// latency of the messages sent in the first and in the second half of
	// the step: a queue growing within the step shows as a second half
	// slower than the first (what the sustain rule checks). Nil when the
	// half has no samples.
	FirstHalfP50MS  *float64 `json:"first_half_p50_ms,omitempty"`
	SecondHalfP50MS *float64 `json:"second_half_p50_ms,omitempty"`
	// FloorMS is the step's fan-out floor with --write-floor: the fan-out
	// (fanout's subscribers, rooms' room size) × the cost of one loopback
	// write that calibrate measured, the time one message takes to be
	// written to every member before any other work. P50FloorMultiple
	// and P99FloorMultiple are p50 and p99 as multiples of it. Nil
	// without --write-floor.
	FloorMS          *float64 `json:"floor_ms,omitempty"`
	P50FloorMultiple *float64 `json:"p50_floor_multiple,omitempty"`
	P99FloorMultiple *float64 `json:"p99_floor_multiple,omitempty"`
	// Behind is true when the server did not keep up: deliveries or
	// publishes below target, or p99 above the limit, or (sustain rule)
	// p50 growing within the step; Reason says why, and Failed names the
	// conditions failed: publish, delivery, p99, p50_growth, acked,
	// ack_p99, refused, closed, interrupted.
	Behind bool     `json:"behind"`
	Reason string   `json:"reason,omitempty"`
	Failed []string `json:"failed,omitempty"`
}

// StoreSyncReport describes a server's group commits over a window, from
// its chatd_store_sync_seconds and chatd_store_sync_writes histograms:
// how often the store synced, how long a sync took, how many writes shared
// one (group commit at work when above 1), and the share of the window
// the syncer spent syncing (near 100%: the disk's sync latency bounds the
// durable rate).
type StoreSyncReport struct {
	SyncsPerSec   float64 `json:"syncs_per_sec"`
	MeanSyncMS    float64 `json:"mean_sync_ms"`
	WritesPerSync float64 `json:"writes_per_sync"`
	BusyPercent   float64 `json:"busy_percent"`
}

// LatencyReport summarises a latency histogram, in milliseconds.
type LatencyReport struct {
	Count  int64   `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func latencyReport(h *hdrhistogram.Histogram) LatencyReport {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return LatencyReport{
		Count:  h.TotalCount(),
		MeanMS: h.Mean() / 1000,
		P50MS:  ms(h.ValueAtQuantile(50)),
		P90MS:  ms(h.ValueAtQuantile(90)),
		P99MS:  ms(h.ValueAtQuantile(99)),
		P999MS: ms(h.ValueAtQuantile(99.9)),
		MaxMS:  ms(h.Max()),
	}
}

// Integrity accounts for every message. Expected is the sum over
// subscribers of the messages stored (acked) in their room; Lost counts
// the sequence numbers a subscriber never saw, Duplicated those it saw
// twice, OutOfOrder those that arrived after a higher one. The CID counters
// cross-check per publisher: messages per (subscriber, publisher) against
// the publisher's acks, and cid counters going backwards.
type Integrity struct {
	Published uint64 `json:"published"`
	// Publishers is the number of connections with at least one message
	// acknowledged.
	Publishers    int    `json:"publishers"`
	Stored        uint64 `json:"stored"`
	Refused       uint64 `json:"refused"`
	Unanswered    uint64 `json:"unanswered"`
	DuplicateAcks uint64 `json:"duplicate_acks"`
	// UnmatchedAcks are acks whose cid names no send waiting for one
	// (acked twice, or never sent).
	UnmatchedAcks uint64            `json:"unmatched_acks"`
	Expected      uint64            `json:"expected_deliveries"`
	Delivered     uint64            `json:"delivered"`
	Lost          uint64            `json:"lost"`
	Duplicated    uint64            `json:"duplicated"`
	OutOfOrder    uint64            `json:"out_of_order"`
	CIDMissing    uint64            `json:"cid_missing"`
	CIDExtra      uint64            `json:"cid_extra"`
	CIDOutOfOrder uint64            `json:"cid_out_of_order"`
	Foreign       uint64            `json:"foreign"`
	BadFrames     uint64            `json:"bad_frames"`
	SlowParses    uint64            `json:"slow_parses"`
	Errors        map[string]uint64 `json:"errors"`
	// Clean is true when nothing above indicates a lost, duplicated or
	// reordered message.
	Clean bool `json:"clean"`
}

// Consistent reports whether nothing in the report shows a lost,
// duplicated, reordered or wrong message (chatbench exits 3 otherwise).
func (r *Report) Consistent() bool {
	switch {
	case r.Integrity != nil && !r.Integrity.Clean:
		return false
	case r.History != nil && !r.History.Clean:
		return false
	case r.Ready != nil && r.Ready.PageProblem != "":
		return false
	}
	return true
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes the report as tables for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("chatbench %s — %s, %.1fs, %s\n", r.Scenario, r.Started.Format(time.RFC3339), r.Seconds, strings.Join(r.URLs, " "))
	keys := sortedKeys(r.Params)
	var params []string
	for _, k := range keys {
		params = append(params, fmt.Sprintf("%s=%v", k, r.Params[k]))
	}
	p("params: %s\n\n", strings.Join(params, " "))
	c := r.Connections
	p("connections\topened %d of %d\tfailed %d\tin %.2fs\tclosed by server %s\n", c.Opened, c.Requested, c.Failed, c.ConnectSeconds, formatCodes(c.ClosedByServer))
	if s := r.Server; s != nil {
		p("server (%s)\trss %s → %s", s.Source, formatBytes(float64(s.RSSBeforeBytes)), formatBytes(float64(s.RSSAfterBytes)))
		if s.RSSPerConnection > 0 {
			p("\t%s per connection", formatBytes(s.RSSPerConnection))
		}
		if s.CPUPercent != nil {
			p("\tcpu %.1f%%", *s.CPUPercent)
		}
		p("\n")
		if s.HeapInuseAfterBytes > 0 {
			p("server (go)\theap in use %s → %s\tstacks %s → %s\tgoroutines %d → %d\n",
				formatBytes(float64(s.HeapInuseBeforeBytes)), formatBytes(float64(s.HeapInuseAfterBytes)),
				formatBytes(float64(s.StackInuseBeforeBytes)), formatBytes(float64(s.StackInuseAfterBytes)),
				s.GoroutinesBefore, s.GoroutinesAfter)
		}
	}
	if len(r.Steps) > 0 {
		p("\nstep\ttarget deliv/s\tdeliv/s\tpub/s\tp50 ms\tp50 halves ms\tp99 ms\tp99.9 ms\tmax ms\tsamples\tserver cpu\tclient cpu\tother cpu\t\n")
		for _, s := range r.Steps {
			cpu := "-"
			if s.ServerCPUPercent != nil {
				cpu = fmt.Sprintf("%.0f%%", *s.ServerCPUPercent)
			}
			other := "-"
			if s.OtherCPUPercent != nil {
				other = fmt.Sprintf("%.0f%%", *s.OtherCPUPercent)
			}
			flag := ""
			if s.Behind {
				flag = "behind: " + s.Reason
			}
			p("%d\t%s\t%s\t%s\t%.2f\t%s\t%.2f\t%.2f\t%.1f\t%d\t%s\t%.0f%%\t%s\t%s\n", s.Step,
				formatRate(s.TargetDeliveriesPerSec), formatRate(s.DeliveriesPerSec), formatRate(s.PublishPerSec),
				s.Latency.P50MS, formatHalves(s.FirstHalfP50MS, s.SecondHalfP50MS), s.Latency.P99MS, s.Latency.P999MS, s.Latency.MaxMS, s.Latency.Count, cpu, s.ClientCPUPercent, other, flag)
		}
	}
	if hasFloor(r.Steps) {
		p("\nstep\tfan-out floor ms\tp50 × floor\tp99 × floor\t\n")
		for _, s := range r.Steps {
			if s.FloorMS != nil {
				p("%d\t%.3f\t%.1f\t%.1f\t\n", s.Step, *s.FloorMS, *s.P50FloorMultiple, *s.P99FloorMultiple)
			}
		}
	}
	if hasAckLatency(r.Steps) {
		p("\nstep\tacked/s\tack p50 ms\tack p90 ms\tack p99 ms\tack p99.9 ms\tack max ms\tsamples\tsyncs/s\twrites/sync\tmean sync ms\tsyncer busy\t\n")
		for _, s := range r.Steps {
			if a := s.AckLatency; a != nil {
				p("%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%s\t\n", s.Step, formatRate(s.AckedPerSec), a.P50MS, a.P90MS, a.P99MS, a.P999MS, a.MaxMS, a.Count, formatSync(s.StoreSync))
			}
		}
	}
	if st := r.Storm; st != nil {
		p("\nstorm\topened\tin s\tper s\tpresence frames\trecovered\t\n")
		phases := []struct {
			name string
			ph   *StormPhase
		}{{"join", &st.Join}, {"reconnect", st.Reconnect}}
		for _, x := range phases {
			if x.ph != nil {
				p("%s\t%d of %d\t%.2f\t%.0f\t%d\t%d\t\n", x.name, x.ph.Opened, x.ph.Requested, x.ph.Seconds, x.ph.PerSecond, x.ph.PresenceFrames, x.ph.Recovered)
			}
		}
	}
	if c := r.Calibrate; c != nil {
		p("\ncalibrate\t%d sockets\t%d-byte writes\t%d rounds\t%d writes\tin %.2fs\tcpus %s\n", c.Sockets, c.WriteBytes, c.Rounds, c.Writes, c.Seconds, orDash(c.CPUs))
		p("ns per write\tmedian %.0f\tmean %.0f\tp10 %.0f\tp90 %.0f\tthread cpu %s\n", c.MedianWriteNS, c.MeanWriteNS, c.P10WriteNS, c.P90WriteNS, formatNS(c.ThreadCPUWriteNS))
		p("fan-out floor\t%d × %.0f ns = %.1f µs\t(one message to %d subscribers, one write each)\n", c.Sockets, c.MedianWriteNS, c.FanoutFloorUS, c.Sockets)
		p("for fanout and rooms\t--write-floor %s\n", c.WriteFloor)
	}
	if r.MaxSustainedDeliveries > 0 {
		p("\nmax sustained deliveries/s: %s\n", formatRate(r.MaxSustainedDeliveries))
	}
	if r.MaxSustainedAcked > 0 {
		p("\nmax sustained acked messages/s: %s\n", formatRate(r.MaxSustainedAcked))
	}
	if in := r.Integrity; in != nil {
		p("\nmessages\tpublished %d by %d\tstored %d\trefused %d\tunanswered %d\tduplicate acks %d\tunmatched acks %d\n", in.Published, in.Publishers, in.Stored, in.Refused, in.Unanswered, in.DuplicateAcks, in.UnmatchedAcks)
		p("deliveries\texpected %d\tdelivered %d\tlost %d\tduplicated %d\tout of order %d\n", in.Expected, in.Delivered, in.Lost, in.Duplicated, in.OutOfOrder)
		p("by cid\tmissing %d\textra %d\tout of order %d\tforeign %d\tbad frames %d\n", in.CIDMissing, in.CIDExtra, in.CIDOutOfOrder, in.Foreign, in.BadFrames)
		if len(in.Errors) > 0 {
			p("error frames\t%s\n", formatCodes64(in.Errors))
		}
	}
	r.writeDurable(p)
	for _, n := range r.Notes {
		p("note: %s\n", n)
	}
	verdict := "OK"
	if !r.OK {
		verdict = "NOT OK (see above)"
	}
	p("result: %s\n", verdict)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatNS(ns float64) string {
	if ns <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", ns)
}

// formatHalves is a step's two halves' p50, "first → second" ("-" for a
// half without samples).
func formatHalves(first, second *float64) string {
	f := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f", *v)
	}
	return f(first) + " → " + f(second)
}

func formatSync(s *StoreSyncReport) string {
	if s == nil {
		return "-\t-\t-\t-"
	}
	return fmt.Sprintf("%.0f\t%.1f\t%.2f\t%.0f%%", s.SyncsPerSec, s.WritesPerSync, s.MeanSyncMS, s.BusyPercent)
}

func hasFloor(steps []StepReport) bool {
	for _, s := range steps {
		if s.FloorMS != nil {
			return true
		}
	}
	return false
}

func hasAckLatency(steps []StepReport) bool {
	for _, s := range steps {
		if s.AckLatency != nil {
			return true
		}
	}
	return false
}

func formatCodes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func formatCodes64(m map[string]uint64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func formatBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func formatRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e4:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}
