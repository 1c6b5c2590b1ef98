package resources

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestServiceAccountMountsNoToken(t *testing.T) {
	cc := testCluster(3)
	sa := build(t, ServiceAccountBuilder{}, cc).(*corev1.ServiceAccount)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken %v, want false", sa.AutomountServiceAccountToken)
	}
}
