package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// APISecretBuilder builds the Secret holding the keys of chatd's server API
// (--api-key-file; spec.serverAPI), generated once when the Secret is
// created and never written again by the operator. The file takes one key a
// line, so a user rotates by editing the Secret: add a second line, move the
// backend to it, remove the first (chatd re-reads the file).
//
// Turning the API off leaves the Secret in place (owned by the ChatCluster,
// it goes with it): turning it on again finds the keys the backend has.
type APISecretBuilder struct{}

// apiKeyBytes is the entropy of the generated key.
const apiKeyBytes = 32

// Build names the Secret (ChatCluster.APISecretName).
func (APISecretBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cc.APISecretName(), Namespace: cc.Namespace}}
}

// Update fills a new Secret with a fresh key and leaves an existing one as
// it is (a user may have rotated its keys).
func (APISecretBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	s := obj.(*corev1.Secret)
	if s.ResourceVersion != "" {
		return nil
	}
	s.Labels = withLabels(s.Labels, CommonLabels(cc))
	key, err := randomBase64(apiKeyBytes)
	if err != nil {
		return err
	}
	s.Type = corev1.SecretTypeOpaque
	s.Data = map[string][]byte{chatv1alpha1.DefaultAPIKeysKey: []byte(key + "\n")}
	return nil
}
