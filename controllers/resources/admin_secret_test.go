package resources

import (
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

// TestAdminSecret: a fresh token, and an existing Secret (a user may have
// rotated its token) left exactly as read.
func TestAdminSecret(t *testing.T) {
	cc := testCluster(3)
	s := build(t, AdminSecretBuilder{}, cc).(*corev1.Secret)
	tok := KeyringKeys(s.Data[chatv1alpha1.DefaultAdminTokenKey])
	if len(tok) != 1 || len(tok[0]) < 40 {
		t.Fatalf("token %q, want one line of 32 random bytes in base64", tok)
	}
	existing := stored(&corev1.Secret{Data: map[string][]byte{"token": []byte("a\nb\n")}})
	if err := (AdminSecretBuilder{}).Update(cc, existing); err != nil {
		t.Fatal(err)
	}
	if string(existing.Data["token"]) != "a\nb\n" || existing.Labels != nil {
		t.Fatalf("an existing admin Secret was rewritten: %+v", existing)
	}
}

// TestAPISecret: a fresh key, and an existing Secret (a user may have
// rotated its keys) left exactly as read.
func TestAPISecret(t *testing.T) {
	cc := testCluster(3)
	s := build(t, APISecretBuilder{}, cc).(*corev1.Secret)
	keys := KeyringKeys(s.Data[chatv1alpha1.DefaultAPIKeysKey])
	if len(keys) != 1 || len(keys[0]) < 40 {
		t.Fatalf("keys %q, want one line of 32 random bytes in base64", keys)
	}
	existing := stored(&corev1.Secret{Data: map[string][]byte{"keys": []byte("a\nb\n")}})
	if err := (APISecretBuilder{}).Update(cc, existing); err != nil {
		t.Fatal(err)
	}
	if string(existing.Data["keys"]) != "a\nb\n" || existing.Labels != nil {
		t.Fatalf("an existing API key Secret was rewritten: %+v", existing)
	}
}
