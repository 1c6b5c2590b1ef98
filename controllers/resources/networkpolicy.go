package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelNamespaceName is the label the API server puts on every namespace
// with its name.
const LabelNamespaceName = "kubernetes.io/metadata.name"

// NetworkPolicyBuilder builds the chatd pods' ingress NetworkPolicy
// (spec.networkPolicy):
//
//   - the client port from spec.networkPolicy.clientFrom, or from anywhere
//     when it is empty;
//   - gossip (TCP and UDP) and the inter-node transport only from the pods
//     of the same ChatCluster (its selector labels, in its namespace);
//   - the admin listener (admin API, /metrics) from the operator's
//     namespace (the operator reads each pod's /metrics while scaling) and
//     from the namespaces of spec.networkPolicy.adminFromNamespaces.
//
// Egress is left open: chatd dials its peers, DNS and the backend's URLs
// (spec.hooks: the hooks and the event stream), and a policy that lists DNS
// servers and backends differs between clusters.
type NetworkPolicyBuilder struct {
	// OperatorNamespace is where the operator runs; empty leaves it out.
	OperatorNamespace string
}

// Build names the NetworkPolicy (ChatCluster.NetworkPolicyName).
func (NetworkPolicyBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: cc.NetworkPolicyName(), Namespace: cc.Namespace}}
}

// Update sets the policy's whole spec.
func (b NetworkPolicyBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	np := obj.(*networkingv1.NetworkPolicy)
	np.Labels = withLabels(np.Labels, CommonLabels(cc))
	np.Spec = NetworkPolicySpec(cc, b.OperatorNamespace)
	return nil
}

// NetworkPolicySpec is the spec NetworkPolicyBuilder sets.
func NetworkPolicySpec(cc *chatv1alpha1.ChatCluster, operatorNamespace string) networkingv1.NetworkPolicySpec {
	tcp, udp := ptr.To(corev1.ProtocolTCP), ptr.To(corev1.ProtocolUDP)
	port := func(proto *corev1.Protocol, p int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: proto, Port: ptr.To(intstr.FromInt32(p))}
	}
	self := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()}}}
	var admin []networkingv1.NetworkPolicyPeer
	if operatorNamespace != "" {
		admin = append(admin, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{LabelNamespaceName: operatorNamespace},
		}})
	}
	if sel := cc.Spec.NetworkPolicy.AdminFromNamespaces; sel != nil {
		admin = append(admin, networkingv1.NetworkPolicyPeer{NamespaceSelector: sel.DeepCopy()})
	}
	rules := []networkingv1.NetworkPolicyIngressRule{
		{
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, chatdconfig.HTTPPort)},
			From:  deepCopyPeers(cc.Spec.NetworkPolicy.ClientFrom), // empty: from anywhere
		},
		{
			Ports: []networkingv1.NetworkPolicyPort{
				port(tcp, chatdconfig.GossipPort), port(udp, chatdconfig.GossipPort), port(tcp, chatdconfig.RPCPort),
			},
			From: self,
		},
	}
	if len(admin) > 0 {
		// No peer at all would mean "from anywhere": leave the rule out
		// instead, which allows nobody.
		rules = append(rules, networkingv1.NetworkPolicyIngressRule{
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, chatdconfig.AdminPort)},
			From:  admin,
		})
	}
	return networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: cc.SelectorLabels()},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress:     rules,
	}
}

func deepCopyPeers(in []networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer {
	if len(in) == 0 {
		return nil
	}
	out := make([]networkingv1.NetworkPolicyPeer, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}
