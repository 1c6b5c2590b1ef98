package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ClientServiceBuilder builds the Service clients connect to: spec.service's
// type and port, to chatd's HTTP port (WebSocket at /ws, the page at /). It
// selects ready pods only, which with chatd means pods that see a majority of
// the cluster. Fields the API server allocates (clusterIP, a node port the
// spec leaves out) are kept.
type ClientServiceBuilder struct{}

// Build names the Service (ChatCluster.ServiceName).
func (ClientServiceBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cc.ServiceName(), Namespace: cc.Namespace}}
}

// Update sets spec.service's type, port, node port and annotations.
func (ClientServiceBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	svc := obj.(*corev1.Service)
	spec := cc.Spec.Service
	svc.Labels = withLabels(svc.Labels, CommonLabels(cc))
	svc.Annotations = withManagedAnnotations(svc.Annotations, spec.Annotations)

	typ := spec.Type
	if typ == "" {
		typ = chatv1alpha1.DefaultServiceType
	}
	port := spec.Port
	if port == 0 {
		port = chatv1alpha1.DefaultServicePort
	}
	p := corev1.ServicePort{
		Name:       chatdconfig.HTTPPortName,
		Protocol:   corev1.ProtocolTCP,
		Port:       port,
		TargetPort: intstr.FromString(chatdconfig.HTTPPortName),
	}
	if typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer {
		switch {
		case spec.NodePort != nil:
			p.NodePort = *spec.NodePort
		default:
			for _, old := range svc.Spec.Ports {
				if old.Name == chatdconfig.HTTPPortName {
					p.NodePort = old.NodePort // keep the one Kubernetes picked
				}
			}
		}
	}
	svc.Spec.Type = typ
	svc.Spec.Selector = cc.SelectorLabels()
	svc.Spec.Ports = []corev1.ServicePort{p}
	return nil
}
