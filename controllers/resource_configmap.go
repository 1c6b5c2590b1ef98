package controllers

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// configMapBuilder builds the ConfigMap that shows the chatd configuration
// the pods are given: the command-line arguments one a line, and the versions
// of the Secrets chatd reads at start. Its hash is annotated on the pod
// template (chat.ringchat.io/config-hash) and reported in status.configHash
// once every pod runs it, so `kubectl get cm <name>-config` tells what a
// ChatCluster's nodes run.
type configMapBuilder struct {
	config chatdConfig
}

func configMapName(cc *chatv1alpha1.ChatCluster) string { return cc.Name + "-config" }

func (configMapBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: configMapName(cc), Namespace: cc.Namespace}}
}

func (b configMapBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	cm := obj.(*corev1.ConfigMap)
	cm.Labels = withLabels(cm.Labels, commonLabels(cc))
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[chatv1alpha1.AnnotationConfigHash] = b.config.Hash
	cm.Data = b.config.Data
	cm.BinaryData = nil
	return nil
}
