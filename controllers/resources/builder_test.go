package resources

// Unit tests of the builders, one test file per builder file, without an
// API server: Build's identity, and Update on a new object and on one "as
// read back", with the fields the API server allocates or defaults and the
// ones other tools set. The envtest suite (package controllers) checks the
// same objects against a real kube-apiserver; these pin down each builder's
// own rules.

import (
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/scaling"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// build runs b's Build and Update on a new object, as CreateOrUpdate does
// before a create.
func build(t *testing.T, b Builder, cc *chatv1alpha1.ChatCluster) client.Object {
	t.Helper()
	obj := b.Build(cc)
	if obj.GetName() == "" || obj.GetNamespace() != cc.Namespace {
		t.Fatalf("%T: Build gave name %q namespace %q", b, obj.GetName(), obj.GetNamespace())
	}
	if err := b.Update(cc, obj); err != nil {
		t.Fatalf("%T: Update of a new object: %v", b, err)
	}
	return obj
}

// stored marks obj as read from the API server (the builders tell a new
// object from an existing one by its resourceVersion).
func stored[T client.Object](obj T) T {
	obj.SetResourceVersion("42")
	obj.SetUID("0f0f0f0f-0000-4000-8000-000000000001")
	return obj
}

// wantLabels fails unless every common label of cc is on obj.
func wantLabels(t *testing.T, cc *chatv1alpha1.ChatCluster, obj client.Object) {
	t.Helper()
	for k, v := range CommonLabels(cc) {
		if got := obj.GetLabels()[k]; got != v {
			t.Errorf("%T %s: label %s = %q, want %q", obj, obj.GetName(), k, got, v)
		}
	}
}

func TestBuildersNameTheirObjects(t *testing.T) {
	cc := testCluster(3)
	cfg := chatdconfig.Desired(cc, 3, nil)
	for _, tc := range []struct {
		b    Builder
		kind string
		name string
	}{
		{ServiceAccountBuilder{}, "ServiceAccount", "prod"},
		{GossipKeyringBuilder{}, "Secret", "prod-gossip-keyring"},
		{AdminSecretBuilder{}, "Secret", "prod-admin"},
		{APISecretBuilder{}, "Secret", "prod-api"},
		{PeerCABuilder{Now: time.Now()}, "Secret", "prod-peer-ca"},
		{PeerTLSBuilder{CA: testCA(t), Pods: 3, Now: time.Now(), Duration: time.Hour, RenewBefore: time.Minute}, "Secret", "prod-peer-tls"},
		{MetricsServiceBuilder{}, "Service", "prod-metrics"},
		{NetworkPolicyBuilder{OperatorNamespace: "ops"}, "NetworkPolicy", "prod-chatd"},
		{ConfigMapBuilder{Config: cfg}, "ConfigMap", "prod-config"},
		{HeadlessServiceBuilder{}, "Service", "prod-headless"},
		{ClientServiceBuilder{}, "Service", "prod"},
		{PodDisruptionBudgetBuilder{}, "PodDisruptionBudget", "prod"},
		{StatefulSetBuilder{Config: cfg, Plan: scaling.Plan{Replicas: 3, ExpectedNodes: 3}}, "StatefulSet", "prod"},
	} {
		obj := build(t, tc.b, cc)
		if KindOf(obj) != tc.kind || obj.GetName() != tc.name || obj.GetNamespace() != "chat" {
			t.Errorf("%T builds %s %s/%s, want %s chat/%s", tc.b, KindOf(obj), obj.GetNamespace(), obj.GetName(), tc.kind, tc.name)
		}
		wantLabels(t, cc, obj)
	}
}

func testCluster(replicas int32) *chatv1alpha1.ChatCluster {
	return &chatv1alpha1.ChatCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "prod", Generation: 4},
		Spec:       chatv1alpha1.ChatClusterSpec{Replicas: ptr.To(replicas), Auth: chatv1alpha1.AuthSpec{AllowAnonymous: true}},
	}
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func TestManagedAnnotations(t *testing.T) {
	got := withManagedAnnotations(map[string]string{"other": "x"}, map[string]string{"a": "1", "b": "2"})
	got = withManagedAnnotations(got, map[string]string{"b": "3"})
	if got["other"] != "x" || got["b"] != "3" || got[AnnotationManagedAnnotations] != "b" {
		t.Errorf("annotations %v", got)
	}
	if _, ok := got["a"]; ok {
		t.Errorf("a removed from the spec is still there: %v", got)
	}
	got = withManagedAnnotations(got, nil)
	if len(got) != 1 || got["other"] != "x" {
		t.Errorf("annotations %v, want only other", got)
	}
}
