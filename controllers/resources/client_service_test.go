package resources

import (
	"reflect"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestClientServiceDefaults(t *testing.T) {
	cc := testCluster(3)
	svc := build(t, ClientServiceBuilder{}, cc).(*corev1.Service)
	want := []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")}}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || !reflect.DeepEqual(svc.Spec.Ports, want) {
		t.Errorf("type %s ports %+v, want ClusterIP %+v", svc.Spec.Type, svc.Spec.Ports, want)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, cc.SelectorLabels()) {
		t.Errorf("selector %v, want %v", svc.Spec.Selector, cc.SelectorLabels())
	}
	if svc.Spec.PublishNotReadyAddresses {
		t.Errorf("the client Service publishes pods that are not ready")
	}
}

// TestClientServiceKeepsAllocatedFields: an update keeps what the API
// server allocated (clusterIP, a node port the spec leaves out) and what
// other tools set, and takes the spec's node port when it names one.
func TestClientServiceKeepsAllocatedFields(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.Service = chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Port: 8088}
	svc := stored(build(t, ClientServiceBuilder{}, cc).(*corev1.Service))
	// As the API server returns it: allocated and defaulted fields, and a
	// label and an annotation of another tool.
	svc.Spec.ClusterIP = "10.96.0.17"
	svc.Spec.ClusterIPs = []string{"10.96.0.17"}
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	svc.Spec.Ports[0].NodePort = 31234
	svc.Labels["team"] = "chat"
	svc.Annotations = map[string]string{"other.tool/seen": "yes"}

	if err := (ClientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != "10.96.0.17" || !reflect.DeepEqual(svc.Spec.ClusterIPs, []string{"10.96.0.17"}) {
		t.Errorf("clusterIP %q %v, want the allocated 10.96.0.17 kept", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
	}
	if svc.Spec.Ports[0].NodePort != 31234 || svc.Spec.Ports[0].Port != 8088 {
		t.Errorf("ports %+v, want port 8088 with the allocated node port 31234", svc.Spec.Ports)
	}
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityNone || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("defaulted fields dropped: %+v", svc.Spec)
	}
	if svc.Labels["team"] != "chat" || svc.Annotations["other.tool/seen"] != "yes" {
		t.Errorf("another tool's label or annotation dropped: %v %v", svc.Labels, svc.Annotations)
	}

	// A LoadBalancer keeps the node port too.
	cc.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
	if err := (ClientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].NodePort != 31234 {
		t.Errorf("LoadBalancer: type %s ports %+v, want the node port 31234 kept", svc.Spec.Type, svc.Spec.Ports)
	}

	// The spec's node port wins over the allocated one.
	cc.Spec.Service.NodePort = ptr.To[int32](30080)
	if err := (ClientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("node port %d, want the spec's 30080", svc.Spec.Ports[0].NodePort)
	}

	// Back to ClusterIP: no node port (the API server refuses one), the
	// clusterIP still kept.
	cc.Spec.Service = chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}
	if err := (ClientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Ports[0].NodePort != 0 || svc.Spec.Ports[0].Port != 80 || svc.Spec.ClusterIP != "10.96.0.17" {
		t.Errorf("ClusterIP: ports %+v clusterIP %q, want port 80, no node port, clusterIP kept", svc.Spec.Ports, svc.Spec.ClusterIP)
	}
}

// TestClientServiceAnnotations: the spec's annotations are set, one removed
// from the spec is removed, another tool's stays.
func TestClientServiceAnnotations(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.Service.Annotations = map[string]string{"lb.example/internal": "true", "lb.example/idle": "60"}
	svc := stored(build(t, ClientServiceBuilder{}, cc).(*corev1.Service))
	svc.Annotations["other.tool/seen"] = "yes"
	cc.Spec.Service.Annotations = map[string]string{"lb.example/idle": "120"}
	if err := (ClientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.Annotations["lb.example/internal"]; ok || svc.Annotations["lb.example/idle"] != "120" || svc.Annotations["other.tool/seen"] != "yes" {
		t.Errorf("annotations %v: want lb.example/idle=120 and other.tool/seen, not lb.example/internal", svc.Annotations)
	}
}
