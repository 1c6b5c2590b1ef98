package controllers

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// staleWrites is the suite's operator client. In a namespace a test arms
// with n, the next n updates of a StatefulSet meet a stale read, as when
// the StatefulSet controller writes the object between the operator's read
// from its cache and its update: just before the operator's update goes
// out, the test writes the object itself (an annotation), so the real API
// server refuses the operator's update, whose resourceVersion is now old,
// with a conflict.
type staleWrites struct {
	client.Client
	admin client.Client

	mu        sync.Mutex
	armed     map[string]int // namespace → updates still to make stale
	conflicts map[string]int // namespace → conflicts the API server returned
}

// arm makes the next n StatefulSet updates in ns meet a stale read.
func (c *staleWrites) arm(ns string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed[ns] += n
}

// refused is how many of the operator's updates in ns the API server
// refused with a conflict.
func (c *staleWrites) refused(ns string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conflicts[ns]
}

func (c *staleWrites) take(ns string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed[ns] == 0 {
		return 0, false
	}
	c.armed[ns]--
	return c.armed[ns], true
}

// Update implements client.Writer.
func (c *staleWrites) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	if _, ok := obj.(*appsv1.StatefulSet); !ok {
		return c.Client.Update(ctx, obj, opts...)
	}
	left, ok := c.take(obj.GetNamespace())
	if !ok {
		return c.Client.Update(ctx, obj, opts...)
	}
	live := &appsv1.StatefulSet{}
	if err := c.admin.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
		return fmt.Errorf("test: reading the StatefulSet to make the operator's read stale: %w", err)
	}
	orig := live.DeepCopy()
	metav1.SetMetaDataAnnotation(&live.ObjectMeta, "test.ringchat.io/written-meanwhile", strconv.Itoa(left))
	if err := c.admin.Patch(ctx, live, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("test: writing the StatefulSet meanwhile: %w", err)
	}
	err := c.Client.Update(ctx, obj, opts...)
	if apierrors.IsConflict(err) {
		c.mu.Lock()
		c.conflicts[obj.GetNamespace()]++
		c.mu.Unlock()
	}
	return err
}

// degradedWatch records every Degraded condition of the ChatClusters of a
// namespace, as written, through a watch.
type degradedWatch struct {
	w    watch.Interface
	done chan struct{}
	mu   sync.Mutex
	seen []metav1.Condition
}

func (s *suite) watchDegraded(t *testing.T, ns string) *degradedWatch {
	t.Helper()
	wc, err := client.NewWithWatch(s.adminCfg, client.Options{Scheme: s.scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &chatv1alpha1.ChatClusterList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	d := &degradedWatch{w: w, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for ev := range w.ResultChan() {
			cc, ok := ev.Object.(*chatv1alpha1.ChatCluster)
			if !ok {
				continue
			}
			if c := meta.FindStatusCondition(cc.Status.Conditions, chatv1alpha1.ConditionDegraded); c != nil {
				d.mu.Lock()
				d.seen = append(d.seen, *c)
				d.mu.Unlock()
			}
		}
	}()
	t.Cleanup(d.stop)
	return d
}

func (d *degradedWatch) stop() {
	d.w.Stop()
	<-d.done
}

// trueOnes are the Degraded=True conditions seen.
func (d *degradedWatch) trueOnes() []metav1.Condition {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []metav1.Condition
	for _, c := range d.seen {
		if c.Status == metav1.ConditionTrue {
			out = append(out, c)
		}
	}
	return out
}

// TestConflictsDuringARolloutAreRetriedQuietly: during rollouts, the
// operator's updates of the StatefulSet are refused with real conflicts by
// the API server, a few times (retried within the reconcile) and more
// times than one reconcile retries (the reconcile comes back). Each rollout
// still reaches the StatefulSet, and no status ever written says
// Degraded=True, and no Warning event is recorded.
func TestConflictsDuringARolloutAreRetriedQuietly(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	s.waitSts(t, cc, "StatefulSet created", exists)
	s.setStsStatus(t, cc, 3)
	s.waitCondition(t, cc, chatv1alpha1.ConditionDegraded, metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected)
	degraded := s.watchDegraded(t, ns)

	for _, tc := range []struct {
		what      string
		conflicts int
	}{
		{"fewer conflicts than one reconcile retries", staleBackoff.Steps - 1},
		{"more conflicts than one reconcile retries", 2*staleBackoff.Steps + 1},
	} {
		before := s.stale.refused(ns)
		s.stale.arm(ns, tc.conflicts)
		size := cc.HistorySize() + 100
		s.update(t, cc, func() { cc.Spec.HistorySize = size })
		s.waitSts(t, cc, tc.what+": the rollout reaches the StatefulSet", func(sts *appsv1.StatefulSet) error {
			return hasArg(sts, fmt.Sprintf("--history-size=%d", size))
		})
		if got := s.stale.refused(ns) - before; got != tc.conflicts {
			t.Errorf("%s: the API server refused %d updates with a conflict, want %d", tc.what, got, tc.conflicts)
		}
		// The status of the rollout, written after the StatefulSet: every
		// status written before it has been seen by the watch by then.
		s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionTrue, chatv1alpha1.ReasonRollingUpdate)
	}
	if got := degraded.trueOnes(); len(got) > 0 {
		t.Errorf("conflicts made the ChatCluster Degraded: %+v", got)
	}
	evs, err := s.events(ns, cc.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		// The operator's warnings only: the API server's own repair loop
		// may report on the ChatCluster's Service under load
		// (ClusterIPNotAllocated, "repairing"), which no operator caused.
		if e.Type == corev1.EventTypeWarning && e.ReportingController == operatorController {
			t.Errorf("Warning event %s: %s", e.Reason, e.Note)
		}
	}
}
