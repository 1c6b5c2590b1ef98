package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ServiceAccountBuilder builds the pods' ServiceAccount. chatd never talks
// to the Kubernetes API, so the account has no role and mounts no token.
type ServiceAccountBuilder struct{}

// Build names the ServiceAccount (ServiceAccountName).
func (ServiceAccountBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: ServiceAccountName(cc), Namespace: cc.Namespace}}
}

// Update sets the common labels and turns the token mount off.
func (ServiceAccountBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	sa := obj.(*corev1.ServiceAccount)
	sa.Labels = withLabels(sa.Labels, CommonLabels(cc))
	sa.AutomountServiceAccountToken = ptr.To(false)
	return nil
}
