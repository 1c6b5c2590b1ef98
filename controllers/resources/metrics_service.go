package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelMetrics marks the Services in front of the chatd pods' admin
// listeners, for a ServiceMonitor to select (the Helm chart's does).
const LabelMetrics = "chat.ringchat.io/metrics"

// MetricsServiceBuilder builds the ClusterIP Service in front of the pods'
// admin listeners (port "admin": /metrics, and the admin API, which needs
// the admin token), for Prometheus. The client Service never exposes that
// port. It lists every pod, ready or not: a pod that is not ready is the one
// whose metrics matter most.
type MetricsServiceBuilder struct{}

// Build names the Service (ChatCluster.MetricsServiceName).
func (MetricsServiceBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cc.MetricsServiceName(), Namespace: cc.Namespace}}
}

// Update sets the one admin port, keeping the allocated clusterIP.
func (MetricsServiceBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	svc := obj.(*corev1.Service)
	svc.Labels = withLabels(svc.Labels, CommonLabels(cc))
	svc.Labels[LabelMetrics] = "true"
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.PublishNotReadyAddresses = true
	svc.Spec.Selector = cc.SelectorLabels()
	svc.Spec.Ports = []corev1.ServicePort{{
		Name:       chatdconfig.AdminPortName,
		Protocol:   corev1.ProtocolTCP,
		Port:       chatdconfig.AdminPort,
		TargetPort: intstr.FromString(chatdconfig.AdminPortName),
	}}
	return nil
}
