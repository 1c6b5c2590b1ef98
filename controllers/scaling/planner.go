// Package scaling is the replica planner of the ringchat operator: from the
// replicas a ChatCluster wants and its StatefulSet as it is, the next
// StatefulSet replicas and the cluster size its chatd pods apply
// (--expected-nodes-file, a ConfigMap key), one safe step at a time. It is
// pure: what the pods apply is an input (the reconciler observes it), and
// nothing here reads a clock or the API.
package scaling

import (
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// Annotations on the StatefulSet itself (not its pod template) that record
// the cluster size its pods are told, so that the next reconcile plans from
// it.
const (
	// AnnotationExpectedNodes is the value written to the ConfigMap key the
	// pods read as --expected-nodes-file.
	AnnotationExpectedNodes = "chat.ringchat.io/expected-nodes"
	// AnnotationExpectedNodesChanged is when that value last changed
	// (RFC 3339).
	AnnotationExpectedNodesChanged = "chat.ringchat.io/expected-nodes-changed"
)

// Plan is what the StatefulSet runs: its replicas and the cluster size its
// pods apply (the ConfigMap's expected-nodes key, which they read as
// --expected-nodes-file). It differs from spec.replicas only while the
// operator scales one safe step at a time (see Next).
type Plan struct {
	Replicas      int32
	ExpectedNodes int32
}

// Next decides the StatefulSet's replicas and the cluster size its pods
// apply, for a ChatCluster that wants target nodes, given the StatefulSet as
// it exists (nil before it is created). sizeApplied says whether every pod
// of the StatefulSet applies the size it records (Current(sts).ExpectedNodes)
// — what the reconciler observes from the pods. When Next returns
// awaitsSize, the plan holds still until that is so; it never moves on
// without it where a step relies on it.
//
// The expected size is kept at or above the number of pods that exist, so
// that no two disjoint groups of them can both see a strict majority (the
// split-brain rule), and below twice the pods that stay, so that they keep a
// majority and stay writable. Changing it does not restart the pods, but it
// reaches each of them only after a while, during which some apply the old
// value; hence the steps.
//
//   - Creating, or growing from 0 or 1 pod: target and target, at once
//     (there is no running cluster to split, or no safe size in between).
//   - Scaling up: the size first, then the pods. The size is raised to what
//     the running pods keep a majority of (at most twice them, less one),
//     and once every pod applies it, pods are added up to it. Then again,
//     until the target. The ConfigMap is written before the StatefulSet, so
//     new pods start with the new size.
//   - Steady: a size left above the replicas by a scale-down is lowered to
//     them once the StatefulSet is settled, that is once the removed pods
//     are gone.
//   - Scaling down: one pod at a time, each step once the StatefulSet is
//     settled (every pod ready on the current revision, none terminating)
//     and every pod applies the recorded size, so that each leaving node
//     hands its rooms over while the others are stable (the StatefulSet's
//     Parallel policy would otherwise delete every extra pod at once). The
//     size stays as it is while the pods that remain hold a majority of it;
//     otherwise it is first lowered to the largest size that both the pods
//     now running and the pods that will remain agree on, and the pod is
//     removed once every pod applies that. Only 2 → 1 has no such size:
//     there the last pod is told 1 at once.
//   - Scaling to 0: at once (there is nowhere to hand rooms to), keeping the
//     size as it is.
func Next(target int32, sts *appsv1.StatefulSet, sizeApplied bool) (p Plan, awaitsSize bool) {
	if sts == nil {
		return Plan{Replicas: target, ExpectedNodes: target}, false
	}
	cur := Current(sts)
	switch {
	case target > cur.Replicas && cur.Replicas <= 1:
		return Plan{Replicas: target, ExpectedNodes: max(target, cur.ExpectedNodes)}, false
	case target > cur.Replicas:
		return scaleUp(target, cur, sts, sizeApplied)
	case target == 0:
		return Plan{Replicas: 0, ExpectedNodes: cur.ExpectedNodes}, false
	case target == cur.Replicas:
		if cur.ExpectedNodes <= target || Settled(sts) {
			return Plan{Replicas: target, ExpectedNodes: target}, false
		}
		return cur, false
	case !Settled(sts):
		return cur, false
	case !sizeApplied:
		return cur, true
	}
	next := cur.Replicas - 1
	switch {
	case 2*next > cur.ExpectedNodes:
		return Plan{Replicas: next, ExpectedNodes: cur.ExpectedNodes}, false
	case cur.Replicas >= 3:
		// 2·next-1 is at least cur.Replicas here: safe for the pods running
		// now, and a majority for the ones that stay.
		return Plan{Replicas: cur.Replicas, ExpectedNodes: 2*next - 1}, false
	}
	return Plan{Replicas: next, ExpectedNodes: next}, false
}

// scaleUp is Next for a target above the StatefulSet's replicas, from 2 pods
// or more; cur is the StatefulSet's Current plan.
func scaleUp(target int32, cur Plan, sts *appsv1.StatefulSet, sizeApplied bool) (Plan, bool) {
	switch {
	case cur.ExpectedNodes > cur.Replicas:
		// The size was raised (or a scale-down is reversed): add pods up to
		// it once every pod applies it.
		if !sizeApplied {
			return cur, true
		}
		return Plan{Replicas: min(target, cur.ExpectedNodes), ExpectedNodes: cur.ExpectedNodes}, false
	case !Settled(sts):
		// Pods added by the last step have not joined yet; raising the size
		// now could leave the others without a majority.
		return cur, false
	}
	return Plan{Replicas: cur.Replicas, ExpectedNodes: min(target, 2*cur.Replicas-1)}, false
}

// Current is the plan the StatefulSet carries: its replicas and the
// expected size recorded on it (its replicas when the annotation is missing).
func Current(sts *appsv1.StatefulSet) Plan {
	p := Plan{Replicas: Replicas(sts), ExpectedNodes: Replicas(sts)}
	if v, err := strconv.ParseInt(sts.Annotations[AnnotationExpectedNodes], 10, 32); err == nil && v >= 0 {
		p.ExpectedNodes = int32(v)
	}
	return p
}

// ExpectedNodesChangedAt is when the StatefulSet's expected size last
// changed; the zero time when that is not recorded.
func ExpectedNodesChangedAt(sts *appsv1.StatefulSet) time.Time {
	t, err := time.Parse(time.RFC3339Nano, sts.Annotations[AnnotationExpectedNodesChanged])
	if err != nil {
		return time.Time{}
	}
	return t
}

// Settled reports whether the StatefulSet controller has caught up with the
// StatefulSet's spec and every pod is ready on the current revision. Pods
// being deleted still count in status.replicas, so a settled StatefulSet has
// no pod left draining.
func Settled(sts *appsv1.StatefulSet) bool {
	n := Replicas(sts)
	st := sts.Status
	return st.ObservedGeneration >= sts.Generation &&
		st.Replicas == n && st.ReadyReplicas == n && st.UpdatedReplicas == n &&
		st.CurrentRevision == st.UpdateRevision
}

// Replicas is the StatefulSet's spec.replicas (1 when unset, as the API
// server defaults it).
func Replicas(sts *appsv1.StatefulSet) int32 {
	if sts.Spec.Replicas == nil {
		return 1
	}
	return *sts.Spec.Replicas
}
