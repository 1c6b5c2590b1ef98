package status

import (
	"errors"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/scaling"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// claim is a data claim as the StatefulSet controller makes it: requested
// size req; phase and capacity as the volume controller reports them.
func claim(name, req string, phase corev1.PersistentVolumeClaimPhase, capacity string) corev1.PersistentVolumeClaim {
	c := corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(req)},
		}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: phase},
	}
	if capacity != "" {
		c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}
	}
	return c
}

// TestStorageStatus: Memory without spec.storage; with it, the claims, the
// bound ones, and the smallest capacity among the bound ones.
func TestStorageStatus(t *testing.T) {
	cc := testCluster(3)
	if st := Storage(cc, nil); st.Mode != chatv1alpha1.StorageModeMemory || st.Claims != 0 || st.Capacity != nil {
		t.Errorf("memory-only: %+v", st)
	}
	cc.Spec.Storage = &chatv1alpha1.StorageSpec{Size: resource.MustParse("2Gi")}
	if st := Storage(cc, nil); st.Mode != chatv1alpha1.StorageModePersistent || st.Claims != 0 || st.BoundClaims != 0 || st.Capacity != nil {
		t.Errorf("no claims yet: %+v", st)
	}
	st := Storage(cc, []corev1.PersistentVolumeClaim{
		claim("data-prod-0", "2Gi", corev1.ClaimBound, "2Gi"),
		claim("data-prod-1", "2Gi", corev1.ClaimBound, "1536Mi"), // still growing
		claim("data-prod-2", "2Gi", corev1.ClaimPending, ""),
		claim("data-prod-3", "2Gi", corev1.ClaimLost, "512Mi"), // not bound: not counted
	})
	if st.Mode != chatv1alpha1.StorageModePersistent || st.Claims != 4 || st.BoundClaims != 2 || st.Capacity == nil ||
		st.Capacity.Cmp(resource.MustParse("1536Mi")) != 0 {
		t.Errorf("status %+v (capacity %v), want Persistent, 4 claims, 2 bound, capacity 1536Mi", st, st.Capacity)
	}
}

// TestStatusStorageAndResizeFailure: computeStatus reports the storage, a
// failed resize as Degraded=True/VolumeResizeFailed, and keeps the last
// storage status when the reconcile failed before reading the claims.
func TestStatusStorageAndResizeFailure(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.Storage = &chatv1alpha1.StorageSpec{Size: resource.MustParse("2Gi")}
	now := metav1.Now()
	obs := Observed{
		StatefulSet: fakeSts(3, 3, "img", "h"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3},
		Claims:    []corev1.PersistentVolumeClaim{claim("data-prod-0", "1Gi", corev1.ClaimBound, "1Gi")},
		ResizeErr: errResize,
	}
	st := Compute(cc, obs, now)
	if st.Storage == nil || st.Storage.Claims != 1 || st.Storage.Capacity.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("storage status %+v", st.Storage)
	}
	checkConds(t, st, cc.Generation, map[string]wantCond{
		chatv1alpha1.ConditionDegraded: {metav1.ConditionTrue, chatv1alpha1.ReasonVolumeResizeFailed},
	})

	cc.Status = st
	st = Compute(cc, Observed{StatefulSet: fakeSts(3, 3, "img", "h"), Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}, ReconcileErr: errResize}, now)
	if st.Storage == nil || st.Storage.Claims != 1 {
		t.Errorf("a failed reconcile replaced the storage status: %+v", st.Storage)
	}
}

var errResize = errors.New("growing PersistentVolumeClaim data-prod-0 to 2Gi: the storageclass does not allow volume expansion")
