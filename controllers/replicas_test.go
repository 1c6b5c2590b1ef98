package controllers

import (
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// testPropagation is the planner tests' bound on how long a new cluster
// size takes to reach every pod.
const testPropagation = 90 * time.Second

// planT0 is the reference time of the planner tests.
var planT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func stsWith(replicas, expected int32, isSettled bool) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Generation: 2, Annotations: map[string]string{annotationExpectedNodes: strconv.Itoa(int(expected))}},
		Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To(replicas)},
	}
	if isSettled {
		s.Status = appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: replicas, ReadyReplicas: replicas, UpdatedReplicas: replicas, CurrentRevision: "a", UpdateRevision: "a"}
	}
	return s
}

// changedAt records that the expected size changed at t.
func changedAt(s *appsv1.StatefulSet, t time.Time) *appsv1.StatefulSet {
	s.Annotations[annotationExpectedNodesChanged] = t.Format(time.RFC3339)
	return s
}

func TestPlanReplicas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   int32
		existing *appsv1.StatefulSet
		want     replicaPlan
		wait     time.Duration
	}{
		{"create", 3, nil, replicaPlan{3, 3}, 0},
		{"steady", 3, stsWith(3, 3, true), replicaPlan{3, 3}, 0},
		{"scale up raises the size first", 5, stsWith(3, 3, true), replicaPlan{3, 5}, testPropagation},
		{"to what the running pods keep a majority of", 9, stsWith(3, 3, true), replicaPlan{3, 5}, testPropagation},
		{"not while pods are starting", 9, stsWith(5, 5, false), replicaPlan{5, 5}, 0},
		{"then waits for it to reach the pods", 5, changedAt(stsWith(3, 5, true), planT0.Add(-time.Minute)), replicaPlan{3, 5}, testPropagation - time.Minute},
		{"then adds the pods, settled or not", 9, changedAt(stsWith(3, 5, false), planT0.Add(-testPropagation)), replicaPlan{5, 5}, 0},
		{"from one pod at once", 3, stsWith(1, 1, true), replicaPlan{3, 3}, 0},
		{"a reversed scale-down adds pods at once", 5, stsWith(4, 5, false), replicaPlan{5, 5}, 0},
		{"scale down waits for a settled StatefulSet", 3, stsWith(5, 5, false), replicaPlan{5, 5}, 0},
		{"scale down one at a time, keeping expected nodes", 3, stsWith(5, 5, true), replicaPlan{4, 5}, 0},
		{"last step keeps expected nodes while the pod drains", 3, stsWith(4, 5, true), replicaPlan{3, 5}, 0},
		{"then lowers them once the pod is gone", 3, stsWith(3, 5, true), replicaPlan{3, 3}, 0},
		{"but not while it drains", 3, stsWith(3, 5, false), replicaPlan{3, 5}, 0},
		{"unsettled mid-way keeps both", 3, stsWith(4, 5, false), replicaPlan{4, 5}, 0},
		{"a step that would lose the majority lowers expected first", 2, stsWith(3, 5, true), replicaPlan{3, 3}, testPropagation},
		{"6 → 3 lowers expected to 5 before the fourth pod goes", 3, stsWith(4, 6, true), replicaPlan{4, 5}, testPropagation},
		{"and waits for it to reach the pods", 3, changedAt(stsWith(4, 5, true), planT0.Add(-time.Minute)), replicaPlan{4, 5}, testPropagation - time.Minute},
		{"then removes the pod", 3, changedAt(stsWith(4, 5, true), planT0.Add(-testPropagation)), replicaPlan{3, 5}, 0},
		{"2 → 1 has no safe size: 1 at once", 1, stsWith(2, 2, true), replicaPlan{1, 1}, 0},
		{"scale to zero at once, size kept", 0, stsWith(3, 3, false), replicaPlan{0, 3}, 0},
		{"from zero", 3, stsWith(0, 3, true), replicaPlan{3, 3}, 0},
		{"no annotation: expected is the replicas", 2, func() *appsv1.StatefulSet { s := stsWith(3, 0, true); s.Annotations = nil; return s }(), replicaPlan{2, 3}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, wait := planReplicas(tc.target, tc.existing, planT0, testPropagation)
			if got != tc.want || wait != tc.wait {
				t.Errorf("planReplicas(%d) = %+v, wait %v; want %+v, wait %v", tc.target, got, wait, tc.want, tc.wait)
			}
		})
	}
}

// TestResizeKeepsMajorityAndSafety walks every resize between 1 and 9 nodes
// the way the cluster lives it: time passes while the operator waits, a
// changed size reaches the pods only after testPropagation, and a
// removed pod exists until the StatefulSet settles. At every step it checks
// the two promises of the expected size, for every value a pod may still be
// applying:
//   - safety: it is at least the number of pods that exist, so no two
//     disjoint groups of them can both see a majority (except 2 → 1, where no
//     size can be safe for both pods and the one that stays);
//   - liveness: the pods that were there and stay hold a strict majority of
//     it, so the cluster stays writable (except when growing from one pod,
//     or shrinking to one).
func TestResizeKeepsMajorityAndSafety(t *testing.T) {
	for from := int32(1); from <= 9; from++ {
		for to := int32(1); to <= 9; to++ {
			now := planT0
			sts := changedAt(stsWith(from, from, true), now.Add(-time.Hour))
			for steps := 0; ; steps++ {
				if steps > 40 {
					t.Fatalf("%d → %d does not finish", from, to)
				}
				before := currentPlan(sts)
				p, wait := planReplicas(to, sts, now, testPropagation)
				if p == before && wait == 0 {
					break
				}
				// Values some pod may apply during this step: the one
				// before it (unless a newer one has propagated) and the new.
				applied := []int32{before.ExpectedNodes, p.ExpectedNodes}
				exist := max(before.Replicas, p.Replicas)
				for _, e := range applied {
					if e < exist && before.Replicas > 1 && !(to == 1 && exist == 2) {
						t.Errorf("%d → %d: %d pods exist while one applies expected %d: two groups could split", from, to, exist, e)
					}
					if stay := min(before.Replicas, p.Replicas); stay > 1 && 2*stay <= e {
						t.Errorf("%d → %d: %d pods stay while one applies expected %d: no majority", from, to, stay, e)
					}
				}
				next := stsWith(p.Replicas, p.ExpectedNodes, true)
				next.Annotations[annotationExpectedNodesChanged] = sts.Annotations[annotationExpectedNodesChanged]
				if p.ExpectedNodes != before.ExpectedNodes {
					changedAt(next, now)
				}
				sts = next
				now = now.Add(max(wait, time.Second))
			}
			if got := currentPlan(sts); got.Replicas != to || got.ExpectedNodes != to {
				t.Errorf("%d → %d ends at %+v", from, to, got)
			}
		}
	}
}
