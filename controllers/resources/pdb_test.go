package resources

import (
	"reflect"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestPDB(t *testing.T) {
	cc := testCluster(5)
	pdb := build(t, PodDisruptionBudgetBuilder{}, cc).(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil {
		t.Errorf("default budget maxUnavailable %v minAvailable %v, want maxUnavailable 1 only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
	if pdb.Spec.Selector == nil || !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, cc.SelectorLabels()) {
		t.Errorf("selector %v, want %v", pdb.Spec.Selector, cc.SelectorLabels())
	}

	// The spec's minAvailable replaces the default on the stored object.
	stored(pdb)
	cc.Spec.PodDisruptionBudget = &chatv1alpha1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromString("60%"))}
	if err := (PodDisruptionBudgetBuilder{}).Update(cc, pdb); err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MaxUnavailable != nil || pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromString("60%") {
		t.Errorf("budget maxUnavailable %v minAvailable %v, want minAvailable 60%% only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}

	// And the spec's maxUnavailable replaces minAvailable.
	cc.Spec.PodDisruptionBudget = &chatv1alpha1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(2))}
	if err := (PodDisruptionBudgetBuilder{}).Update(cc, pdb); err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(2) {
		t.Errorf("budget maxUnavailable %v minAvailable %v, want maxUnavailable 2 only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
}
