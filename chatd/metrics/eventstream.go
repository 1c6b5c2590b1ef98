package metrics

import "github.com/prometheus/client_golang/prometheus"

// EventStream are the collectors of the event stream to the backend
// (chatd/eventstream). They live in this package so /metrics lists them
// with the rest, and are created only on a node that streams.
type EventStream struct {
	// Delivered counts entries the backend accepted, by type (message,
	// deleted).
	Delivered *prometheus.CounterVec
	// Batches counts POSTs by result: ok, dead_letter (the backend
	// refused the batch for good: a 4xx other than 408 and 429), retry (a
	// 5xx, 408, 429, a timeout or an unreachable backend: sent again).
	Batches *prometheus.CounterVec
	// DeadLetters counts entries of batches the backend refused for good:
	// the stream went on without them.
	DeadLetters prometheus.Counter
	// Skipped counts entries retention removed before the backend had
	// them (a backend unreachable for longer than --history-retention).
	Skipped prometheus.Counter
	// Lag is the time from an entry's commit to the backend's acceptance
	// of the batch that carried it.
	Lag prometheus.Histogram
}

// NewEventStream creates the event stream collectors and registers them
// on m's registry.
func NewEventStream(m *Metrics) *EventStream {
	e := &EventStream{
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_eventstream_delivered_total",
			Help: "Room log entries the backend accepted through the event stream, by type (message, deleted).",
		}, []string{"type"}),
		Batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_eventstream_batches_total",
			Help: "Event stream POSTs, by result (ok, dead_letter, retry).",
		}, []string{"result"}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_eventstream_dead_letters_total",
			Help: "Entries of event stream batches the backend refused for good (a 4xx other than 408 and 429); the stream went on without them.",
		}),
		Skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_eventstream_skipped_total",
			Help: "Entries retention removed before the event stream could deliver them.",
		}),
		Lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chatd_eventstream_lag_seconds",
			Help:    "Time from an entry's commit to the backend's acceptance of the batch that carried it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
	}
	m.Registry.MustRegister(e.Delivered, e.Batches, e.DeadLetters, e.Skipped, e.Lag)
	return e
}
