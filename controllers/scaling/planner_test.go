package scaling

import (
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func stsWith(replicas, expected int32, isSettled bool) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Generation: 2, Annotations: map[string]string{AnnotationExpectedNodes: strconv.Itoa(int(expected))}},
		Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To(replicas)},
	}
	if isSettled {
		s.Status = appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: replicas, ReadyReplicas: replicas, UpdatedReplicas: replicas, CurrentRevision: "a", UpdateRevision: "a"}
	}
	return s
}

func TestNext(t *testing.T) {
	const applied, notApplied = true, false
	for _, tc := range []struct {
		name     string
		target   int32
		existing *appsv1.StatefulSet
		applied  bool
		want     Plan
		awaits   bool
	}{
		{"create", 3, nil, notApplied, Plan{3, 3}, false},
		{"steady", 3, stsWith(3, 3, true), notApplied, Plan{3, 3}, false},
		{"scale up raises the size first", 5, stsWith(3, 3, true), applied, Plan{3, 5}, false},
		{"to what the running pods keep a majority of", 9, stsWith(3, 3, true), applied, Plan{3, 5}, false},
		{"not while pods are starting", 9, stsWith(5, 5, false), applied, Plan{5, 5}, false},
		{"then waits for every pod to apply it", 5, stsWith(3, 5, true), notApplied, Plan{3, 5}, true},
		{"then adds the pods, settled or not", 9, stsWith(3, 5, false), applied, Plan{5, 5}, false},
		{"from one pod at once", 3, stsWith(1, 1, true), notApplied, Plan{3, 3}, false},
		{"a reversed scale-down adds pods once the size is applied", 5, stsWith(4, 5, false), applied, Plan{5, 5}, false},
		{"scale down waits for a settled StatefulSet", 3, stsWith(5, 5, false), applied, Plan{5, 5}, false},
		{"scale down one at a time, keeping expected nodes", 3, stsWith(5, 5, true), applied, Plan{4, 5}, false},
		{"only once every pod applies the recorded size", 3, stsWith(5, 5, true), notApplied, Plan{5, 5}, true},
		{"last step keeps expected nodes while the pod drains", 3, stsWith(4, 5, true), applied, Plan{3, 5}, false},
		{"then lowers them once the pod is gone", 3, stsWith(3, 5, true), notApplied, Plan{3, 3}, false},
		{"but not while it drains", 3, stsWith(3, 5, false), applied, Plan{3, 5}, false},
		{"unsettled mid-way keeps both", 3, stsWith(4, 5, false), applied, Plan{4, 5}, false},
		{"a step that would lose the majority lowers expected first", 2, stsWith(3, 5, true), applied, Plan{3, 3}, false},
		{"6 → 3 lowers expected to 5 before the fourth pod goes", 3, stsWith(4, 6, true), applied, Plan{4, 5}, false},
		{"and waits for every pod to apply it", 3, stsWith(4, 5, true), notApplied, Plan{4, 5}, true},
		{"then removes the pod", 3, stsWith(4, 5, true), applied, Plan{3, 5}, false},
		{"2 → 1 has no safe size: 1 at once", 1, stsWith(2, 2, true), applied, Plan{1, 1}, false},
		{"scale to zero at once, size kept", 0, stsWith(3, 3, false), notApplied, Plan{0, 3}, false},
		{"from zero", 3, stsWith(0, 3, true), notApplied, Plan{3, 3}, false},
		{"no annotation: expected is the replicas", 2, func() *appsv1.StatefulSet { s := stsWith(3, 0, true); s.Annotations = nil; return s }(), applied, Plan{2, 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, awaits := Next(tc.target, tc.existing, tc.applied)
			if got != tc.want || awaits != tc.awaits {
				t.Errorf("Next(%d, applied=%v) = %+v, awaits %v; want %+v, awaits %v", tc.target, tc.applied, got, awaits, tc.want, tc.awaits)
			}
		})
	}
}

// TestNextNeverMovesOnWithoutTheSize: wherever Next waits for the size,
// the answer without it is to hold still, whatever the StatefulSet.
func TestNextNeverMovesOnWithoutTheSize(t *testing.T) {
	for from := int32(0); from <= 9; from++ {
		for expected := from; expected <= 2*from; expected++ {
			for _, isSettled := range []bool{true, false} {
				for to := int32(0); to <= 9; to++ {
					sts := stsWith(from, expected, isSettled)
					p, awaits := Next(to, sts, false)
					if awaits && p != Current(sts) {
						t.Errorf("%d pods, size %d, settled %v → %d: awaits the size yet plans %+v", from, expected, isSettled, to, p)
					}
					if q, _ := Next(to, sts, true); !awaits && q != p {
						t.Errorf("%d pods, size %d, settled %v → %d: %+v without the size, %+v with it, but it said it does not wait", from, expected, isSettled, to, p, q)
					}
				}
			}
		}
	}
}

// TestResizeKeepsMajorityAndSafety walks every resize between 1 and 9 nodes
// the way the cluster lives it: a changed size reaches the pods only some
// time after it is written (the planner is asked at least once meanwhile,
// and told it has not), and a removed pod exists until the StatefulSet
// settles. At every step it checks the two promises of the expected size,
// for every value a pod may still be applying:
//   - safety: it is at least the number of pods that exist, so no two
//     disjoint groups of them can both see a majority (except 2 → 1, where no
//     size can be safe for both pods and the one that stays);
//   - liveness: the pods that were there and stay hold a strict majority of
//     it, so the cluster stays writable (except when growing from one pod,
//     or shrinking to one).
func TestResizeKeepsMajorityAndSafety(t *testing.T) {
	for from := int32(1); from <= 9; from++ {
		for to := int32(1); to <= 9; to++ {
			sts := stsWith(from, from, true)
			// applied: every pod applies the size sts records. It is false
			// right after a change, and becomes true once the planner has
			// held still for it.
			applied := true
			previous := from // what pods applied before the last change
			for steps := 0; ; steps++ {
				if steps > 60 {
					t.Fatalf("%d → %d does not finish", from, to)
				}
				before := Current(sts)
				p, awaits := Next(to, sts, applied)
				if awaits {
					applied, previous = true, before.ExpectedNodes
					continue
				}
				if p == before {
					break
				}
				// Values some pod may apply during this step: the new one,
				// the recorded one, and, unless every pod applies the
				// recorded one, the one before it.
				values := []int32{before.ExpectedNodes, p.ExpectedNodes}
				if !applied {
					values = append(values, previous)
				}
				exist := max(before.Replicas, p.Replicas)
				for _, e := range values {
					if e < exist && before.Replicas > 1 && !(to == 1 && exist == 2) {
						t.Errorf("%d → %d: %d pods exist while one applies expected %d: two groups could split", from, to, exist, e)
					}
					if stay := min(before.Replicas, p.Replicas); stay > 1 && 2*stay <= e {
						t.Errorf("%d → %d: %d pods stay while one applies expected %d: no majority", from, to, stay, e)
					}
				}
				if p.ExpectedNodes != before.ExpectedNodes {
					applied, previous = false, before.ExpectedNodes
				}
				sts = stsWith(p.Replicas, p.ExpectedNodes, true)
			}
			if got := Current(sts); got.Replicas != to || got.ExpectedNodes != to {
				t.Errorf("%d → %d ends at %+v", from, to, got)
			}
		}
	}
}

func TestCurrentAndChangedAt(t *testing.T) {
	sts := stsWith(4, 5, true)
	if got := Current(sts); got != (Plan{4, 5}) {
		t.Errorf("Current = %+v, want {4 5}", got)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	sts.Annotations[AnnotationExpectedNodesChanged] = at.Format(time.RFC3339Nano)
	if got := ExpectedNodesChangedAt(sts); !got.Equal(at) {
		t.Errorf("ExpectedNodesChangedAt = %v, want %v", got, at)
	}
	sts.Annotations[AnnotationExpectedNodesChanged] = "yesterday"
	if got := ExpectedNodesChangedAt(sts); !got.IsZero() {
		t.Errorf("ExpectedNodesChangedAt of a bad value = %v, want zero", got)
	}
	sts.Spec.Replicas = nil
	sts.Annotations[AnnotationExpectedNodes] = "-1"
	if got := Current(sts); got != (Plan{1, 1}) {
		t.Errorf("Current without replicas and with a bad size = %+v, want {1 1}", got)
	}
}
