package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSecretVersionIsNotDerivedFromTheContent: the version that rolls the
// pods follows the Secret's identity and resourceVersion, and shows
// nothing of what the Secret holds.
func TestSecretVersionIsNotDerivedFromTheContent(t *testing.T) {
	ref := secretRef{field: "spec.auth.jwtSecretRef", name: "jwt", keys: []string{"key"}, rolls: true}
	base := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "jwt", UID: "u1", ResourceVersion: "10"},
		Data:       map[string][]byte{"key": []byte("secret-one")},
	}
	v := secretVersion(ref, base)
	if v != "spec.auth.jwtSecretRef=jwt:uid=u1:resourceVersion=10" {
		t.Errorf("version %q", v)
	}
	rotated := base.DeepCopy()
	rotated.Data["key"] = []byte("secret-two")
	if got := secretVersion(ref, rotated); got != v {
		t.Errorf("the content changed the version (it must not be derived from it): %s → %s", v, got)
	}
	rotated.ResourceVersion = "11"
	if got := secretVersion(ref, rotated); got == v {
		t.Errorf("a write kept the version %s", v)
	}
	recreated := base.DeepCopy()
	recreated.UID = "u2"
	if got := secretVersion(ref, recreated); got == v {
		t.Errorf("a new Secret of the same name kept the version %s", v)
	}
	if strings.Contains(v, "secret-one") {
		t.Errorf("version %q shows the secret", v)
	}
}
