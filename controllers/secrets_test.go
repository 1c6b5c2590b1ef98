package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSecretVersionFollowsTheContentChatdReads: only a change of the key
// chatd reads rolls the pods.
func TestSecretVersionFollowsTheContentChatdReads(t *testing.T) {
	ref := secretRef{field: "spec.auth.jwtSecretRef", name: "jwt", keys: []string{"key"}, rolls: true}
	base := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "jwt", UID: "u1", ResourceVersion: "10"},
		Data:       map[string][]byte{"key": []byte("secret-one"), "other": []byte("x")},
	}
	v := secretVersion(ref, base)

	same := base.DeepCopy()
	same.ResourceVersion = "11"
	same.Labels = map[string]string{"synced-by": "a-tool"}
	same.Annotations = map[string]string{"at": "now"}
	same.Data["other"] = []byte("y")
	if got := secretVersion(ref, same); got != v {
		t.Errorf("metadata or an unused key changed the version: %s → %s", v, got)
	}

	rotated := base.DeepCopy()
	rotated.Data["key"] = []byte("secret-two")
	if got := secretVersion(ref, rotated); got == v {
		t.Errorf("rotating the key kept the version %s", v)
	}
	if len(v) > 100 || strings.Contains(v, "secret-one") {
		t.Errorf("version %q shows the secret", v)
	}
}
