package status

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Storage is status.storage for cc given its data claims: Memory without
// spec.storage; otherwise Persistent with the claims, how many are bound,
// and the smallest capacity among the bound volumes.
func Storage(cc *chatv1alpha1.ChatCluster, claims []corev1.PersistentVolumeClaim) *chatv1alpha1.StorageStatus {
	if cc.Spec.Storage == nil {
		return &chatv1alpha1.StorageStatus{Mode: chatv1alpha1.StorageModeMemory}
	}
	st := &chatv1alpha1.StorageStatus{Mode: chatv1alpha1.StorageModePersistent, Claims: int32(len(claims))}
	for _, c := range claims {
		if c.Status.Phase != corev1.ClaimBound {
			continue
		}
		st.BoundClaims++
		capacity, ok := c.Status.Capacity[corev1.ResourceStorage]
		if !ok {
			continue
		}
		if st.Capacity == nil || capacity.Cmp(*st.Capacity) < 0 {
			st.Capacity = ptrQuantity(capacity)
		}
	}
	return st
}

func ptrQuantity(q resource.Quantity) *resource.Quantity { return &q }
