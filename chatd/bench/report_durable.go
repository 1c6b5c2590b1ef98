package bench

import (
	"fmt"
	"time"
)

// writeDurable prints the fill, history and ready sections, when present,
// in the table style of WriteText.
func (r *Report) writeDurable(p func(format string, args ...any)) {
	if f := r.Fill; f != nil {
		p("\nfill\trooms %d (%s-0 …)  messages/room %d  filled %d  short %d  failed %d  not empty before %d\n",
			f.Rooms, f.RoomPrefix, f.MessagesPerRoom, f.RoomsFilled, f.RoomsShort, f.RoomsFailed, f.RoomsNotEmpty)
		p("fill rate\tacked %d in %.1fs  %s msgs/s\n", f.Messages, f.Seconds, formatRate(f.MessagesPerSec))
		p("fill send→ack\t%s\n", formatLatency(f.AckLatency))
		if s := f.StoreSync; s != nil {
			p("store syncs\t%.0f/s  %.1f writes/sync  mean sync %.2f ms  syncer busy %.0f%%\n", s.SyncsPerSec, s.WritesPerSync, s.MeanSyncMS, s.BusyPercent)
		}
		for _, s := range f.Problems {
			p("fill problem\t%s\n", s)
		}
		writeIdle(p, f.Idle)
	}
	if h := r.History; h != nil {
		inMem := "unknown"
		if h.RoomsInMemoryAtStart >= 0 {
			inMem = fmt.Sprint(h.RoomsInMemoryAtStart)
		}
		if h.WaitedCold {
			inMem += fmt.Sprintf(" (after waiting %.1fs)", h.ColdWaitSeconds)
		}
		p("\nhistory\trooms %d (%s-0 …)  messages/room %d  limit %d  rooms in memory at start %s\n",
			h.Rooms, h.RoomPrefix, h.MessagesPerRoom, h.Limit, inMem)
		p("requests\tsent %d  pages %d  bad pages %d  errors %d  unanswered %d  skipped %d  rooms read %d  %s pages/s\n",
			h.Requests, h.Pages, h.BadPages, h.Errors, h.Unanswered, h.Skipped, h.RoomsRead, formatRate(h.PagesPerSec))
		p("cold pages\t%s\n", formatLatency(h.Cold))
		if h.Warm != nil {
			p("warm pages\t%s\n", formatLatency(*h.Warm))
		}
		for _, s := range h.Problems {
			p("history problem\t%s\n", s)
		}
	}
	if rd := r.Ready; rd != nil {
		p("\nready\tstarted %s (from %s)  /readyz after %.3fs (%d polls)", rd.StartedAt.Format(time.RFC3339Nano), rd.StartedFrom, rd.ReadySeconds, rd.Polls)
		if rd.FirstPageRoom != "" {
			p("  first page after %.3fs (%s, %.2f ms)", rd.FirstPageSeconds, rd.FirstPageRoom, rd.FirstPageMS)
		}
		p("\n")
		if rd.RSSAtReadyBytes > 0 {
			p("memory at ready\trss %s\n", formatBytes(float64(rd.RSSAtReadyBytes)))
		}
		if rd.PageProblem != "" {
			p("page problem\t%s\n", rd.PageProblem)
		}
		writeIdle(p, rd.Idle)
	}
}

func writeIdle(p func(format string, args ...any), idle *IdleReport) {
	if idle == nil {
		return
	}
	waited := "not waited for"
	if idle.WaitedForRooms {
		waited = fmt.Sprintf("after waiting %.1fs", idle.WaitSeconds)
	}
	p("idle memory\trooms in memory %d (%s)  held %.0fs  rss %s  heap in use %s  stacks %s  goroutines %d\n",
		idle.RoomsInMemory, waited, idle.HoldSeconds, formatBytes(float64(idle.RSSBytes)),
		formatBytes(float64(idle.HeapInuseBytes)), formatBytes(float64(idle.StackInuseBytes)), idle.Goroutines)
}

func formatLatency(l LatencyReport) string {
	return fmt.Sprintf("p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.1f ms  %d samples",
		l.P50MS, l.P90MS, l.P99MS, l.P999MS, l.MaxMS, l.Count)
}
