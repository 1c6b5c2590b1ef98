package controllers

import (
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

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

func TestPlanReplicas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   int32
		existing *appsv1.StatefulSet
		want     replicaPlan
	}{
		{"create", 3, nil, replicaPlan{3, 3}},
		{"steady", 3, stsWith(3, 3, true), replicaPlan{3, 3}},
		{"scale up at once, even unsettled", 5, stsWith(3, 3, false), replicaPlan{5, 5}},
		{"scale down waits for a settled StatefulSet", 3, stsWith(5, 5, false), replicaPlan{5, 5}},
		{"scale down one at a time, keeping expected nodes", 3, stsWith(5, 5, true), replicaPlan{4, 5}},
		{"last step lowers expected nodes", 3, stsWith(4, 5, true), replicaPlan{3, 3}},
		{"unsettled mid-way keeps both", 3, stsWith(4, 5, false), replicaPlan{4, 5}},
		{"a step that would lose the majority lowers expected to the pods left", 1, stsWith(3, 5, true), replicaPlan{2, 2}},
		{"then to the target", 1, stsWith(2, 2, true), replicaPlan{1, 1}},
		{"scale to zero at once, template kept", 0, stsWith(3, 3, false), replicaPlan{0, 3}},
		{"from zero", 3, stsWith(0, 3, true), replicaPlan{3, 3}},
		{"no annotation: expected is the replicas", 2, func() *appsv1.StatefulSet { s := stsWith(3, 0, true); s.Annotations = nil; return s }(), replicaPlan{2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planReplicas(tc.target, tc.existing); got != tc.want {
				t.Errorf("planReplicas(%d) = %+v, want %+v", tc.target, got, tc.want)
			}
		})
	}
}

// TestScaleDownNeverLeavesAMinority walks every scale-down from up to 9 nodes
// and checks at each step that the pods that remain hold a strict majority of
// the --expected-nodes they run with, and that no two disjoint groups of them
// could both hold one (expected never drops below half the pods).
func TestScaleDownNeverLeavesAMinority(t *testing.T) {
	for from := int32(1); from <= 9; from++ {
		for to := int32(1); to < from; to++ {
			sts := stsWith(from, from, true)
			for steps := 0; stsReplicas(sts) != to; steps++ {
				if steps > 20 {
					t.Fatalf("%d → %d does not finish", from, to)
				}
				p := planReplicas(to, sts)
				if 2*p.Replicas <= p.ExpectedNodes {
					t.Errorf("%d → %d: %d pods with --expected-nodes=%d have no majority", from, to, p.Replicas, p.ExpectedNodes)
				}
				if p.ExpectedNodes < p.Replicas && p.ExpectedNodes != to {
					t.Errorf("%d → %d: %d pods with --expected-nodes=%d could split", from, to, p.Replicas, p.ExpectedNodes)
				}
				sts = stsWith(p.Replicas, p.ExpectedNodes, true)
			}
		}
	}
}
