package resources

import (
	"fmt"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// GossipKeyringBuilder builds the Secret holding the gossip keyring (chatd
// --gossip-keyring-file: one base64 key a line, the primary first), for a
// ChatCluster whose spec.gossip names no keyring of its own.
//
// The first key is generated when the Secret is created. After that the
// keyring changes only by the steps of a rotation the user asks for with the
// annotation chat.ringchat.io/gossip-key-rotation on the ChatCluster
// (Rotation): "add" appends a new key, "promote" moves it first, "remove"
// drops the old one. chatd re-reads the file, so no pod restarts; each step
// must reach every pod before the next (the user waits, watching
// chatd_gossip_keys), so that every node can always read what every other
// encrypts. The step applied last is recorded on the Secret
// (AnnotationGossipKeyringStep), which makes each request idempotent: the
// same annotation seen again changes nothing. A step out of order changes
// nothing either (CheckRotation says why).
//
// A deleted Secret is created again with a new key: pods that read it from
// then on cannot gossip with the running ones (see controllers/README.md).
type GossipKeyringBuilder struct {
	// Rotation is the requested rotation step (the ChatCluster's
	// annotation), or empty.
	Rotation string
}

// gossipKeyBytes is the size of a generated gossip key: AES-256.
const gossipKeyBytes = 32

// Build names the Secret (ChatCluster.GossipKeyringSecretName).
func (GossipKeyringBuilder) Build(cc *chatv1alpha1.ChatCluster) client.Object {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cc.GossipKeyringSecretName(), Namespace: cc.Namespace}}
}

// Update fills a new Secret with one fresh key, and applies a requested
// rotation step to an existing one when it is the next step.
func (b GossipKeyringBuilder) Update(cc *chatv1alpha1.ChatCluster, obj client.Object) error {
	s := obj.(*corev1.Secret)
	s.Labels = withLabels(s.Labels, CommonLabels(cc))
	s.Type = corev1.SecretTypeOpaque
	if s.ResourceVersion == "" {
		key, err := randomBase64(gossipKeyBytes)
		if err != nil {
			return err
		}
		s.Data = map[string][]byte{chatv1alpha1.DefaultGossipKeyringKey: []byte(key + "\n")}
		return nil
	}
	keys := KeyringKeys(s.Data[chatv1alpha1.DefaultGossipKeyringKey])
	step := s.Annotations[chatv1alpha1.AnnotationGossipKeyringStep]
	if b.Rotation == "" || b.Rotation == step || CheckRotation(len(keys), step, b.Rotation) != nil {
		return nil
	}
	switch b.Rotation {
	case chatv1alpha1.GossipRotationAdd:
		key, err := randomBase64(gossipKeyBytes)
		if err != nil {
			return err
		}
		keys = append(keys, key)
	case chatv1alpha1.GossipRotationPromote:
		keys[0], keys[1] = keys[1], keys[0]
	case chatv1alpha1.GossipRotationRemove:
		keys = keys[:1]
	}
	s.Data[chatv1alpha1.DefaultGossipKeyringKey] = []byte(strings.Join(keys, "\n") + "\n")
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[chatv1alpha1.AnnotationGossipKeyringStep] = b.Rotation
	return nil
}

// KeyringKeys are the non-empty lines of a keyring, trimmed, in order.
func KeyringKeys(data []byte) []string {
	var keys []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keys = append(keys, l)
		}
	}
	return keys
}

// CheckRotation says whether requested is the next step of a rotation for a
// keyring of n keys whose last applied step is last (empty before any):
// add on a keyring of one key, promote after add, remove after promote.
// The step already applied is no error (nothing to do).
func CheckRotation(n int, last, requested string) error {
	if requested == "" || requested == last {
		return nil
	}
	order := "the steps are add, promote, remove, each once every pod has read the previous one"
	switch requested {
	case chatv1alpha1.GossipRotationAdd:
		if n == 1 {
			return nil
		}
		return fmt.Errorf("cannot add a gossip key to a keyring of %d keys: finish the rotation first (%s)", n, order)
	case chatv1alpha1.GossipRotationPromote:
		if last == chatv1alpha1.GossipRotationAdd && n == 2 {
			return nil
		}
	case chatv1alpha1.GossipRotationRemove:
		if last == chatv1alpha1.GossipRotationPromote && n == 2 {
			return nil
		}
	default:
		return fmt.Errorf("unknown gossip key rotation step %q: %s", requested, order)
	}
	after := last
	if after == "" {
		after = "nothing"
	}
	return fmt.Errorf("cannot %s after %s: %s", requested, after, order)
}
