package controllers

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// headlessServiceBuilder builds the headless Service through which the nodes
// find each other: its DNS name (chatd --join) resolves to every pod's IP,
// ready or not. publishNotReadyAddresses matters: a chatd node is ready only
// once it has joined the others and sees a majority, so a Service that listed
// ready pods only would never list any. It is also the StatefulSet's
// serviceName (pods get <pod>.<service> DNS names).
type headlessServiceBuilder struct{}

func (headlessServiceBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cc.HeadlessServiceName(), Namespace: cc.Namespace}}
}

func (headlessServiceBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	svc := obj.(*corev1.Service)
	svc.Labels = withLabels(svc.Labels, commonLabels(cc))
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.ClusterIP = corev1.ClusterIPNone // immutable; None from the start
	svc.Spec.PublishNotReadyAddresses = true
	svc.Spec.Selector = cc.SelectorLabels()
	svc.Spec.Ports = []corev1.ServicePort{
		{Name: gossipTCPPortName, Protocol: corev1.ProtocolTCP, Port: gossipPort, TargetPort: intstr.FromString(gossipTCPPortName)},
		{Name: gossipUDPPortName, Protocol: corev1.ProtocolUDP, Port: gossipPort, TargetPort: intstr.FromString(gossipUDPPortName)},
		{Name: rpcPortName, Protocol: corev1.ProtocolTCP, Port: rpcPort, TargetPort: intstr.FromString(rpcPortName)},
	}
	return nil
}
