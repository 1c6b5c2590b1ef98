package controllers

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// serviceAccountBuilder builds the pods' ServiceAccount. chatd never talks
// to the Kubernetes API, so the account has no role and mounts no token.
type serviceAccountBuilder struct{}

func serviceAccountName(cc *chatv1alpha1.ChatCluster) string { return cc.Name }

func (serviceAccountBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccountName(cc), Namespace: cc.Namespace}}
}

func (serviceAccountBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	sa := obj.(*corev1.ServiceAccount)
	sa.Labels = withLabels(sa.Labels, commonLabels(cc))
	sa.AutomountServiceAccountToken = ptr.To(false)
	return nil
}
