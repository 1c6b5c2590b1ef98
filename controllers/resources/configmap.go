package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ConfigMapBuilder builds the ConfigMap that shows the chatd configuration
// the pods are given: the command-line arguments one a line, and the versions
// of the Secrets chatd reads at start. Its hash is annotated on the pod
// template (chat.ringchat.io/config-hash) and reported in status.configHash
// once every pod runs it, so `kubectl get cm <name>-config` tells what a
// ChatCluster's nodes run. Its expected-nodes key is the cluster size the
// pods read at run time (--expected-nodes-file), mounted into every pod.
type ConfigMapBuilder struct {
	Config chatdconfig.Config
}

// Build names the ConfigMap (ConfigMapName).
func (ConfigMapBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName(cc), Namespace: cc.Namespace}}
}

// Update sets the configuration's data and hash, undoing edits by hand.
func (b ConfigMapBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	cm := obj.(*corev1.ConfigMap)
	cm.Labels = withLabels(cm.Labels, CommonLabels(cc))
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[chatv1alpha1.AnnotationConfigHash] = b.Config.Hash
	cm.Data = b.Config.Data
	cm.BinaryData = nil
	return nil
}
