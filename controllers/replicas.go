package controllers

import (
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// Annotations on the StatefulSet itself (not its pod template) that record
// the cluster size its pods are told, so that the next reconcile can plan
// from it.
const (
	// annotationExpectedNodes is the value written to the ConfigMap key the
	// pods read as --expected-nodes-file.
	annotationExpectedNodes = "chat.ringchat.io/expected-nodes"
	// annotationExpectedNodesChanged is when that value last changed
	// (RFC 3339).
	annotationExpectedNodesChanged = "chat.ringchat.io/expected-nodes-changed"
)

// planReplicas decides the StatefulSet's replicas and the cluster size its
// pods apply (--expected-nodes-file, from the ConfigMap) for a ChatCluster
// that wants target nodes, given the StatefulSet as it exists (nil before it
// is created). propagation bounds how long a changed size takes to reach
// every pod: the operator cannot see the file in the pods, so a step that
// relies on every pod applying a new value waits this long. When it returns
// a positive wait, the plan is to hold still and plan again after that long.
//
// The expected size is kept at or above the number of pods that exist, so
// that no two disjoint groups of them can both see a strict majority (the
// split-brain rule), and below twice the pods that stay, so that they keep a
// majority and stay writable. Changing it does not restart the pods, but it
// reaches them only after a while (propagation), during which some pods
// apply the old value.
//
//   - Creating, or growing from 0 or 1 pod: target and target, at once
//     (there is no running cluster to split, or no safe size in between).
//   - Scaling up: the size first, then the pods. The size is raised to what
//     the running pods keep a majority of (at most twice them, less one),
//     and once that has reached every pod, pods are added up to it. Then
//     again, until the target. The ConfigMap is written before the
//     StatefulSet, so new pods start with the new size.
//   - Steady: a size left above the replicas by a scale-down is lowered to
//     them once the StatefulSet is settled, that is once the removed pods
//     are gone.
//   - Scaling down: one pod at a time, each step once the StatefulSet is
//     settled (every pod ready on the current revision, none terminating)
//     and the last change of the size has reached every pod, so that each
//     leaving node hands its rooms over while the others are stable (the
//     StatefulSet's Parallel policy would otherwise delete every extra pod
//     at once). The size stays as it is while the pods that remain hold a
//     majority of it; otherwise it is first lowered to the largest size that
//     both the pods now running and the pods that will remain agree on, and
//     the pod is removed once that has propagated. Only 2 → 1 has no such
//     size: there the last pod is told 1 at once.
//   - Scaling to 0: at once (there is nowhere to hand rooms to), keeping the
//     size as it is.
func planReplicas(target int32, existing *appsv1.StatefulSet, now time.Time, propagation time.Duration) (replicaPlan, time.Duration) {
	if existing == nil {
		return replicaPlan{Replicas: target, ExpectedNodes: target}, 0
	}
	p := currentPlan(existing)
	cur, curExpected := p.Replicas, p.ExpectedNodes
	switch {
	case target > cur && cur <= 1:
		return replicaPlan{Replicas: target, ExpectedNodes: max(target, curExpected)}, 0
	case target > cur:
		return planScaleUp(target, p, existing, now, propagation)
	case target == 0:
		return replicaPlan{Replicas: 0, ExpectedNodes: curExpected}, 0
	case target == cur:
		if curExpected <= target || settled(existing) {
			return replicaPlan{Replicas: target, ExpectedNodes: target}, 0
		}
		return p, 0
	case !settled(existing):
		return p, 0
	}
	if wait := untilPropagated(existing, now, propagation); wait > 0 {
		return p, wait
	}
	next := cur - 1
	switch {
	case 2*next > curExpected:
		return replicaPlan{Replicas: next, ExpectedNodes: curExpected}, 0
	case cur >= 3:
		// 2·next-1 is at least cur here: safe for the pods running now,
		// and a majority for the ones that stay.
		return replicaPlan{Replicas: cur, ExpectedNodes: 2*next - 1}, propagation
	}
	return replicaPlan{Replicas: next, ExpectedNodes: next}, 0
}

// planScaleUp is planReplicas for a target above the StatefulSet's replicas,
// from 2 pods or more; p is the StatefulSet's currentPlan.
func planScaleUp(target int32, p replicaPlan, existing *appsv1.StatefulSet, now time.Time, propagation time.Duration) (replicaPlan, time.Duration) {
	switch {
	case p.ExpectedNodes > p.Replicas:
		// The size was raised (or a scale-down is reversed): add pods up to
		// it once every pod applies it.
		if wait := untilPropagated(existing, now, propagation); wait > 0 {
			return p, wait
		}
		return replicaPlan{Replicas: min(target, p.ExpectedNodes), ExpectedNodes: p.ExpectedNodes}, 0
	case !settled(existing):
		// Pods added by the last step have not joined yet; raising the size
		// now could leave the others without a majority.
		return p, 0
	}
	return replicaPlan{Replicas: p.Replicas, ExpectedNodes: min(target, 2*p.Replicas-1)}, propagation
}

// untilPropagated is how long the last change of the expected size still
// needs to reach every pod (0 once it has).
func untilPropagated(sts *appsv1.StatefulSet, now time.Time, propagation time.Duration) time.Duration {
	return max(0, expectedNodesChangedAt(sts).Add(propagation).Sub(now))
}

// currentPlan is the plan the StatefulSet carries: its replicas and the
// expected size recorded on it (its replicas when the annotation is missing).
func currentPlan(sts *appsv1.StatefulSet) replicaPlan {
	p := replicaPlan{Replicas: stsReplicas(sts), ExpectedNodes: stsReplicas(sts)}
	if v, err := strconv.ParseInt(sts.Annotations[annotationExpectedNodes], 10, 32); err == nil && v >= 0 {
		p.ExpectedNodes = int32(v)
	}
	return p
}

// expectedNodesChangedAt is when the StatefulSet's expected size last
// changed; the zero time when that is not recorded.
func expectedNodesChangedAt(sts *appsv1.StatefulSet) time.Time {
	t, err := time.Parse(time.RFC3339, sts.Annotations[annotationExpectedNodesChanged])
	if err != nil {
		return time.Time{}
	}
	return t
}

// settled reports whether the StatefulSet controller has caught up with the
// StatefulSet's spec and every pod is ready on the current revision. Pods
// being deleted still count in status.replicas, so a settled StatefulSet has
// no pod left draining.
func settled(sts *appsv1.StatefulSet) bool {
	n := stsReplicas(sts)
	st := sts.Status
	return st.ObservedGeneration >= sts.Generation &&
		st.Replicas == n && st.ReadyReplicas == n && st.UpdatedReplicas == n &&
		st.CurrentRevision == st.UpdateRevision
}

// stsReplicas is the StatefulSet's spec.replicas (1 when unset, as the API
// server defaults it).
func stsReplicas(sts *appsv1.StatefulSet) int32 {
	if sts.Spec.Replicas == nil {
		return 1
	}
	return *sts.Spec.Replicas
}
