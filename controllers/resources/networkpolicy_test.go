package resources

import (
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// TestNetworkPolicyShape: the three rules of the documented shape, by
// default and with the user's peers.
func TestNetworkPolicyShape(t *testing.T) {
	cc := testCluster(3)
	np := build(t, NetworkPolicyBuilder{OperatorNamespace: "ops"}, cc).(*networkingv1.NetworkPolicy)
	spec := np.Spec
	if spec.PodSelector.MatchLabels["chat.ringchat.io/cluster"] != "prod" || len(spec.PolicyTypes) != 1 || spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Fatalf("selector/types %+v", spec)
	}
	if len(spec.Ingress) != 3 {
		t.Fatalf("%d rules, want 3", len(spec.Ingress))
	}
	client, peers, admin := spec.Ingress[0], spec.Ingress[1], spec.Ingress[2]
	wantPorts(t, "client", client, "TCP/8080")
	if client.From != nil {
		t.Errorf("client rule from %+v, want anyone", client.From)
	}
	wantPorts(t, "peers", peers, "TCP/7946", "UDP/7946", "TCP/7947")
	if len(peers.From) != 1 || peers.From[0].NamespaceSelector != nil || peers.From[0].PodSelector == nil ||
		peers.From[0].PodSelector.MatchLabels["chat.ringchat.io/cluster"] != "prod" ||
		peers.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "chatd" {
		t.Errorf("peer rule from %+v, want this ChatCluster's pods", peers.From)
	}
	wantPorts(t, "admin", admin, "TCP/9090")
	if len(admin.From) != 1 || admin.From[0].NamespaceSelector == nil || admin.From[0].NamespaceSelector.MatchLabels[LabelNamespaceName] != "ops" || admin.From[0].PodSelector != nil {
		t.Errorf("admin rule from %+v, want the operator's namespace", admin.From)
	}

	// The user's peers.
	cc.Spec.NetworkPolicy = chatv1alpha1.NetworkPolicySpec{
		ClientFrom:          []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}},
		AdminFromNamespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "monitoring"}},
	}
	spec = NetworkPolicySpec(cc, "ops")
	if f := spec.Ingress[0].From; len(f) != 1 || f[0].IPBlock.CIDR != "10.0.0.0/8" {
		t.Errorf("client from %+v", f)
	}
	if f := spec.Ingress[2].From; len(f) != 2 || f[1].NamespaceSelector.MatchLabels["team"] != "monitoring" {
		t.Errorf("admin from %+v", f)
	}
	// No operator namespace and no selector: no admin rule (nobody), never
	// a rule without peers (anybody).
	cc.Spec.NetworkPolicy.AdminFromNamespaces = nil
	spec = NetworkPolicySpec(cc, "")
	if len(spec.Ingress) != 2 {
		t.Errorf("%d rules without any admin peer, want 2", len(spec.Ingress))
	}
}

func wantPorts(t *testing.T, name string, r networkingv1.NetworkPolicyIngressRule, want ...string) {
	t.Helper()
	var got []string
	for _, p := range r.Ports {
		got = append(got, string(ptr.Deref(p.Protocol, corev1.ProtocolTCP))+"/"+p.Port.String())
		if p.Port.Type != intstr.Int {
			t.Errorf("%s: port %v by name", name, p.Port)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s ports %v, want %v", name, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s ports %v, want %v", name, got, want)
		}
	}
}
