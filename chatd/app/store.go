package app

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/store"
)

// storeObserver maps the message store's measurements onto metrics
// (store.Observer).
type storeObserver struct {
	m *metrics.Metrics
	// retained, once set (after the node exists), is told after every
	// retention pass that removed messages.
	retained atomic.Pointer[func()]
}

// GroupCommit implements store.Observer.
func (o *storeObserver) GroupCommit(latency time.Duration, writes, _ int, err error) {
	if err != nil {
		return
	}
	o.m.StoreSyncTime.Observe(latency.Seconds())
	o.m.StoreSyncWrites.Observe(float64(writes))
}

// WriteRefused implements store.Observer.
func (o *storeObserver) WriteRefused(err error) {
	reason := "failed"
	switch {
	case errors.Is(err, store.ErrFull):
		reason = "full"
	case errors.Is(err, store.ErrClosed):
		reason = "closed"
	}
	o.m.StoreRefused.WithLabelValues(reason).Inc()
}

// Retention implements store.Observer.
func (o *storeObserver) Retention(_ time.Duration, _ int, removed uint64, _ error) {
	o.m.StoreRetained.Add(float64(removed))
	if f := o.retained.Load(); removed > 0 && f != nil {
		(*f)()
	}
}
