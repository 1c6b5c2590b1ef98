package resources

import (
	"encoding/base64"
	"reflect"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
)

func TestGossipSecretGenerated(t *testing.T) {
	cc := testCluster(3)
	a := build(t, GossipSecretBuilder{}, cc).(*corev1.Secret)
	b := build(t, GossipSecretBuilder{}, cc).(*corev1.Secret)
	if a.Immutable == nil || !*a.Immutable || a.Type != corev1.SecretTypeOpaque {
		t.Errorf("immutable %v type %q, want an immutable Opaque Secret", a.Immutable, a.Type)
	}
	for _, k := range []string{chatv1alpha1.DefaultGossipKeyKey, chatv1alpha1.DefaultClusterSecretKey} {
		raw, err := base64.StdEncoding.DecodeString(string(a.Data[k]))
		if err != nil || len(raw) != 32 || len(a.Data[k]) != 44 {
			t.Errorf("%s = %q (%v): want 32 random bytes as 44 characters of base64", k, a.Data[k], err)
		}
		if string(a.Data[k]) == string(b.Data[k]) {
			t.Errorf("%s is the same in two new Secrets", k)
		}
	}
	if string(a.Data[chatv1alpha1.DefaultGossipKeyKey]) == string(a.Data[chatv1alpha1.DefaultClusterSecretKey]) {
		t.Errorf("gossip key and cluster secret are equal")
	}
}

// TestGossipSecretNeverUpdated: an existing gossip Secret is left exactly
// as read, values and labels, so CreateOrUpdate writes nothing (the
// operator has no update permission on Secrets).
func TestGossipSecretNeverUpdated(t *testing.T) {
	cc := testCluster(3)
	for name, edit := range map[string]func(*corev1.Secret){
		"as created":    func(*corev1.Secret) {},
		"labels edited": func(s *corev1.Secret) { s.Labels = map[string]string{"team": "chat"} },
		"values replaced by hand": func(s *corev1.Secret) {
			s.Data = map[string][]byte{chatv1alpha1.DefaultGossipKeyKey: []byte("mine")}
			s.Immutable = nil
		},
	} {
		s := stored(build(t, GossipSecretBuilder{}, cc).(*corev1.Secret))
		edit(s)
		before := s.DeepCopy()
		if err := (GossipSecretBuilder{}).Update(cc, s); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(before, s) {
			t.Errorf("%s: Update changed the existing Secret: labels %v → %v, data changed: %t, immutable %v → %v",
				name, before.Labels, s.Labels, !reflect.DeepEqual(before.Data, s.Data), ptr.Deref(before.Immutable, false), ptr.Deref(s.Immutable, false))
		}
	}
}
