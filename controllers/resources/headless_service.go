package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HeadlessServiceBuilder builds the headless Service through which the nodes
// find each other: its DNS name (chatd --join) resolves to every pod's IP,
// ready or not. publishNotReadyAddresses matters: a chatd node is ready only
// once it has joined the others and sees a majority, so a Service that listed
// ready pods only would never list any. It is also the StatefulSet's
// serviceName (pods get <pod>.<service> DNS names).
type HeadlessServiceBuilder struct{}

// Build names the Service (ChatCluster.HeadlessServiceName).
func (HeadlessServiceBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cc.HeadlessServiceName(), Namespace: cc.Namespace}}
}

// Update sets the Service headless, listing pods that are not ready, with
// the gossip and rpc ports.
func (HeadlessServiceBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	svc := obj.(*corev1.Service)
	svc.Labels = withLabels(svc.Labels, CommonLabels(cc))
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.ClusterIP = corev1.ClusterIPNone // immutable; None from the start
	svc.Spec.PublishNotReadyAddresses = true
	svc.Spec.Selector = cc.SelectorLabels()
	svc.Spec.Ports = []corev1.ServicePort{
		{Name: chatdconfig.GossipTCPPortName, Protocol: corev1.ProtocolTCP, Port: chatdconfig.GossipPort, TargetPort: intstr.FromString(chatdconfig.GossipTCPPortName)},
		{Name: chatdconfig.GossipUDPPortName, Protocol: corev1.ProtocolUDP, Port: chatdconfig.GossipPort, TargetPort: intstr.FromString(chatdconfig.GossipUDPPortName)},
		{Name: chatdconfig.RPCPortName, Protocol: corev1.ProtocolTCP, Port: chatdconfig.RPCPort, TargetPort: intstr.FromString(chatdconfig.RPCPortName)},
	}
	return nil
}
