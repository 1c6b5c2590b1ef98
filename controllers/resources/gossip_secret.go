package resources

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// GossipSecretBuilder builds the Secret with the gossip encryption key and
// the inter-node cluster secret, for a ChatCluster whose spec.gossip names
// neither (or only one: the generated Secret then serves the other).
//
// The values are generated once, when the Secret is created, and never
// again: nodes with different keys cannot talk, so a new key would split the
// running cluster. The Secret is immutable, so nobody edits it by accident
// either. If it is deleted, the next reconcile creates a new one, with new
// values: pods started from then on cannot join the running ones (see
// controllers/README.md).
//
// Once created, the Secret is never written again, labels included: the
// operator may create Secrets but not update them (no update or patch on
// secrets in its ClusterRole), so that it cannot alter any Secret of the
// cluster, and Update leaves an existing one exactly as read, which makes
// controllerutil.CreateOrUpdate skip the write.
type GossipSecretBuilder struct{}

// gossipKeyBytes is the size of the generated gossip key: AES-256. Both
// values are stored as base64 text: environment variables cannot carry every
// byte (NUL), and chatd decodes a gossip key that is not 16, 24 or 32
// characters long as base64 (44 characters here).
const gossipKeyBytes = 32

// Build names the Secret (ChatCluster.GossipSecretName).
func (GossipSecretBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cc.GossipSecretName(), Namespace: cc.Namespace}}
}

// Update fills a new Secret with fresh random values and leaves an existing
// one exactly as it is.
func (GossipSecretBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	s := obj.(*corev1.Secret)
	if s.ResourceVersion != "" {
		return nil // exists: never regenerated, never relabelled
	}
	s.Labels = withLabels(s.Labels, CommonLabels(cc))
	key, err := randomBase64(gossipKeyBytes)
	if err != nil {
		return err
	}
	secret, err := randomBase64(32)
	if err != nil {
		return err
	}
	s.Type = corev1.SecretTypeOpaque
	s.Immutable = ptr.To(true)
	s.Data = map[string][]byte{
		chatv1alpha1.DefaultGossipKeyKey:     []byte(key),
		chatv1alpha1.DefaultClusterSecretKey: []byte(secret),
	}
	return nil
}

func randomBase64(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a random secret: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
