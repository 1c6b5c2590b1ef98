package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PodDisruptionBudgetBuilder builds the PodDisruptionBudget of the chatd
// pods: the spec's budget, or maxUnavailable 1, so that a node drain never
// evicts two nodes at once (each evicted node hands its rooms over first).
type PodDisruptionBudgetBuilder struct{}

// Build names the PodDisruptionBudget (the ChatCluster's name).
func (PodDisruptionBudgetBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: cc.Name, Namespace: cc.Namespace}}
}

// Update sets the selector and the budget.
func (PodDisruptionBudgetBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	pdb := obj.(*policyv1.PodDisruptionBudget)
	pdb.Labels = withLabels(pdb.Labels, CommonLabels(cc))
	pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()}
	pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable = cc.PDBBudget()
	return nil
}
