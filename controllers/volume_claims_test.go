package controllers

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
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

func claimNames(cs []corev1.PersistentVolumeClaim) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestFilterDataClaims: only claims named as the StatefulSet names this
// cluster's data claims count (another cluster whose name extends this
// one's, or another template, does not), in ordinal order.
func TestFilterDataClaims(t *testing.T) {
	cc := testCluster(3) // named prod
	var in []corev1.PersistentVolumeClaim
	for _, n := range []string{"data-prod-10", "data-prod-2", "data-prod-0", "data-prod-x-1", "logs-prod-0", "data-prod-01", "data-prod-", "data-prod-1"} {
		in = append(in, claim(n, "1Gi", corev1.ClaimBound, "1Gi"))
	}
	got := claimNames(filterDataClaims(cc, in))
	if want := []string{"data-prod-0", "data-prod-1", "data-prod-2", "data-prod-10"}; !slices.Equal(got, want) {
		t.Errorf("data claims %v, want %v", got, want)
	}
}

// TestClaimsToGrow: bound claims below the size grow, the others (equal,
// larger, being deleted, not bound yet) are left alone.
func TestClaimsToGrow(t *testing.T) {
	deleting := claim("data-prod-3", "1Gi", corev1.ClaimBound, "1Gi")
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	claims := []corev1.PersistentVolumeClaim{
		claim("data-prod-0", "1Gi", corev1.ClaimBound, "1Gi"),
		claim("data-prod-1", "2Gi", corev1.ClaimBound, "2Gi"),
		claim("data-prod-2", "3Gi", corev1.ClaimPending, ""),
		deleting,
		claim("data-prod-4", "1024Mi", corev1.ClaimBound, "1Gi"),
		claim("data-prod-5", "1Gi", corev1.ClaimPending, ""),
	}
	got := claimNames(claimsToGrow(claims, resource.MustParse("2Gi")))
	if want := []string{"data-prod-0", "data-prod-4"}; !slices.Equal(got, want) {
		t.Errorf("claims to grow %v, want %v", got, want)
	}
}
