package resources

import (
	"testing"

	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
)

// TestMetricsService: the admin port alone, every pod, the metrics label.
func TestMetricsService(t *testing.T) {
	cc := testCluster(3)
	svc := build(t, MetricsServiceBuilder{}, cc).(*corev1.Service)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != chatdconfig.AdminPort || svc.Spec.Ports[0].TargetPort.StrVal != chatdconfig.AdminPortName {
		t.Fatalf("ports %+v", svc.Spec.Ports)
	}
	if svc.Labels[LabelMetrics] != "true" || !svc.Spec.PublishNotReadyAddresses || svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Fatalf("service %+v", svc)
	}
}
