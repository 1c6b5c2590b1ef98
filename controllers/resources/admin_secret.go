package resources

import (
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AdminSecretBuilder builds the Secret holding the bearer token of chatd's
// admin API (--admin-token-file), generated once when the Secret is created
// and never written again by the operator. The file takes one token a line,
// so a user rotates it by editing the Secret: add a second line, move the
// clients to it, remove the first (chatd re-reads the file).
type AdminSecretBuilder struct{}

// adminTokenBytes is the entropy of the generated token.
const adminTokenBytes = 32

// Build names the Secret (ChatCluster.AdminSecretName).
func (AdminSecretBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cc.AdminSecretName(), Namespace: cc.Namespace}}
}

// Update fills a new Secret with a fresh token and leaves an existing one as
// it is (a user may have rotated the token).
func (AdminSecretBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	s := obj.(*corev1.Secret)
	if s.ResourceVersion != "" {
		return nil
	}
	s.Labels = withLabels(s.Labels, CommonLabels(cc))
	token, err := randomBase64(adminTokenBytes)
	if err != nil {
		return err
	}
	s.Type = corev1.SecretTypeOpaque
	s.Data = map[string][]byte{chatv1alpha1.DefaultAdminTokenKey: []byte(token + "\n")}
	return nil
}
