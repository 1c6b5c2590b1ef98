package controllers

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
)

// annotationExpectedNodes, on the StatefulSet itself (not its pod template),
// records the --expected-nodes its pod template carries, so that the next
// reconcile can keep it while scaling down.
const annotationExpectedNodes = "chat.ringchat.io/expected-nodes"

// planReplicas decides the StatefulSet's replicas and its pods'
// --expected-nodes for a ChatCluster that wants target nodes, given the
// StatefulSet as it exists (nil before it is created).
//
//   - Creating, scaling up, or steady: target and target. The new pods start
//     together (podManagementPolicy Parallel) and the existing ones roll to the
//     new --expected-nodes one at a time; they keep a majority of either size
//     throughout, so the cluster stays writable.
//   - Scaling down: one node at a time, so that each leaving node hands its
//     rooms over while the others are settled (the StatefulSet's Parallel
//     policy would otherwise delete every extra pod at once). The next pod is
//     removed only once the StatefulSet is settled (see settled). Changing
//     --expected-nodes rolls every pod, so it is kept as it is while the
//     remaining pods still hold a strict majority of it, and lowered to the
//     target only at the last step, or earlier when the next step would leave
//     them without a majority (they would turn not ready, and the scale-down
//     would wait for readiness forever): then to the number of pods that
//     remain, never below it, so that no two groups of them can both see a
//     majority.
//   - Scaling to 0: at once (there is nowhere to hand rooms to), keeping the
//     pod template as it is.
func planReplicas(target int32, existing *appsv1.StatefulSet) replicaPlan {
	if existing == nil {
		return replicaPlan{Replicas: target, ExpectedNodes: target}
	}
	now := currentPlan(existing)
	cur, curExpected := now.Replicas, now.ExpectedNodes
	switch {
	case target >= cur:
		return replicaPlan{Replicas: target, ExpectedNodes: target}
	case target == 0:
		return replicaPlan{Replicas: 0, ExpectedNodes: curExpected}
	case !settled(existing):
		return replicaPlan{Replicas: cur, ExpectedNodes: curExpected}
	}
	next := cur - 1
	switch {
	case next == target:
		return replicaPlan{Replicas: next, ExpectedNodes: target}
	case 2*next <= curExpected:
		// Lowering it to the target already would let two halves of the
		// pods that remain each see a "majority"; next is the safe size.
		return replicaPlan{Replicas: next, ExpectedNodes: next}
	}
	return replicaPlan{Replicas: next, ExpectedNodes: curExpected}
}

// currentPlan is the plan the StatefulSet carries: its replicas and the
// --expected-nodes recorded on it (its replicas when the annotation is
// missing).
func currentPlan(sts *appsv1.StatefulSet) replicaPlan {
	p := replicaPlan{Replicas: stsReplicas(sts), ExpectedNodes: stsReplicas(sts)}
	if v, err := strconv.ParseInt(sts.Annotations[annotationExpectedNodes], 10, 32); err == nil && v >= 0 {
		p.ExpectedNodes = int32(v)
	}
	return p
}

// settled reports whether the StatefulSet controller has caught up with the
// StatefulSet's spec and every pod is ready on the current revision.
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
