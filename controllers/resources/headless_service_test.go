package resources

import (
	"reflect"
	"testing"

	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestHeadlessService(t *testing.T) {
	cc := testCluster(3)
	svc := build(t, HeadlessServiceBuilder{}, cc).(*corev1.Service)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("type %s clusterIP %q, want headless (None)", svc.Spec.Type, svc.Spec.ClusterIP)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("publishNotReadyAddresses false: chatd pods become ready only after they found each other through this Service")
	}
	want := []corev1.ServicePort{
		{Name: "gossip-tcp", Protocol: corev1.ProtocolTCP, Port: 7946, TargetPort: intstr.FromString("gossip-tcp")},
		{Name: "gossip-udp", Protocol: corev1.ProtocolUDP, Port: 7946, TargetPort: intstr.FromString("gossip-udp")},
		{Name: "rpc", Protocol: corev1.ProtocolTCP, Port: 7947, TargetPort: intstr.FromString("rpc")},
	}
	if !reflect.DeepEqual(svc.Spec.Ports, want) {
		t.Errorf("ports %+v\nwant %+v", svc.Spec.Ports, want)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, cc.SelectorLabels()) {
		t.Errorf("selector %v, want %v", svc.Spec.Selector, cc.SelectorLabels())
	}
	// The container ports the target ports name exist, with the same
	// protocols.
	c := PodTemplate(cc, chatdconfig.Desired(cc, 3, nil)).Spec.Containers[0]
	for _, p := range want {
		found := false
		for _, cp := range c.Ports {
			found = found || (cp.Name == p.TargetPort.StrVal && cp.Protocol == p.Protocol && cp.ContainerPort == p.Port)
		}
		if !found {
			t.Errorf("no container port %s/%s %d for the headless Service's %s", p.TargetPort.StrVal, p.Protocol, p.Port, p.Name)
		}
	}
}
