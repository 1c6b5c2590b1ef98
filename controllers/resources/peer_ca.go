package resources

import (
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/peerpki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PeerCAValidity is the lifetime of a ChatCluster's inter-node CA. Its
// rotation is not automated (docs/security.md), so it is long.
const PeerCAValidity = 10 * 365 * 24 * time.Hour

// PeerCABuilder builds the Secret holding the ChatCluster's inter-node CA
// (type kubernetes.io/tls: tls.crt, tls.key), created once and never
// written again. Only the operator reads it: no pod mounts it, and the pods
// get the CA's certificate alone through the peer TLS Secret
// (PeerTLSBuilder).
type PeerCABuilder struct {
	Now time.Time
}

// Build names the Secret (ChatCluster.PeerCASecretName).
func (PeerCABuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cc.PeerCASecretName(), Namespace: cc.Namespace}}
}

// Update fills a new Secret with a fresh CA and leaves an existing one as it
// is.
func (b PeerCABuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	s := obj.(*corev1.Secret)
	if s.ResourceVersion != "" {
		return nil
	}
	s.Labels = withLabels(s.Labels, CommonLabels(cc))
	crt, key, err := peerpki.NewCA("ringchat peer CA "+cc.Namespace+"/"+cc.Name, b.Now, PeerCAValidity)
	if err != nil {
		return err
	}
	s.Type = corev1.SecretTypeTLS
	s.Data = map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}
	return nil
}
