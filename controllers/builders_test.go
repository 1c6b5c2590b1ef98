package controllers

// Unit tests of the builders (resource_*.go), without an API server: Build's
// identity, and Update on a new object and on one "as read back", with the
// fields the API server allocates or defaults and the ones other tools set.
// The envtest suite checks the same objects against a real kube-apiserver;
// these pin down each builder's own rules.

import (
	"encoding/base64"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// build runs b's Build and Update on a new object, as CreateOrUpdate does
// before a create.
func build(t *testing.T, b resourceBuilder, cc *chatv1alpha1.ChatCluster) client.Object {
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
	for k, v := range commonLabels(cc) {
		if got := obj.GetLabels()[k]; got != v {
			t.Errorf("%T %s: label %s = %q, want %q", obj, obj.GetName(), k, got, v)
		}
	}
}

func TestBuildersNameTheirObjects(t *testing.T) {
	cc := testCluster(3)
	cfg := desiredConfig(cc, replicaPlan{3, 3}, nil)
	for _, tc := range []struct {
		b    resourceBuilder
		kind string
		name string
	}{
		{serviceAccountBuilder{}, "ServiceAccount", "prod"},
		{gossipSecretBuilder{}, "Secret", "prod-gossip"},
		{configMapBuilder{config: cfg}, "ConfigMap", "prod-config"},
		{headlessServiceBuilder{}, "Service", "prod-headless"},
		{clientServiceBuilder{}, "Service", "prod"},
		{pdbBuilder{}, "PodDisruptionBudget", "prod"},
		{statefulSetBuilder{config: cfg, plan: replicaPlan{3, 3}}, "StatefulSet", "prod"},
	} {
		obj := build(t, tc.b, cc)
		if kindOf(obj) != tc.kind || obj.GetName() != tc.name || obj.GetNamespace() != "chat" {
			t.Errorf("%T builds %s %s/%s, want %s chat/%s", tc.b, kindOf(obj), obj.GetNamespace(), obj.GetName(), tc.kind, tc.name)
		}
		wantLabels(t, cc, obj)
	}
}

func TestClientServiceDefaults(t *testing.T) {
	cc := testCluster(3)
	svc := build(t, clientServiceBuilder{}, cc).(*corev1.Service)
	want := []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")}}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || !reflect.DeepEqual(svc.Spec.Ports, want) {
		t.Errorf("type %s ports %+v, want ClusterIP %+v", svc.Spec.Type, svc.Spec.Ports, want)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, cc.SelectorLabels()) {
		t.Errorf("selector %v, want %v", svc.Spec.Selector, cc.SelectorLabels())
	}
	if svc.Spec.PublishNotReadyAddresses {
		t.Errorf("the client Service publishes pods that are not ready")
	}
}

// TestClientServiceKeepsAllocatedFields: an update keeps what the API
// server allocated (clusterIP, a node port the spec leaves out) and what
// other tools set, and takes the spec's node port when it names one.
func TestClientServiceKeepsAllocatedFields(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.Service = chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Port: 8088}
	svc := stored(build(t, clientServiceBuilder{}, cc).(*corev1.Service))
	// As the API server returns it: allocated and defaulted fields, and a
	// label and an annotation of another tool.
	svc.Spec.ClusterIP = "10.96.0.17"
	svc.Spec.ClusterIPs = []string{"10.96.0.17"}
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	svc.Spec.Ports[0].NodePort = 31234
	svc.Labels["team"] = "chat"
	svc.Annotations = map[string]string{"other.tool/seen": "yes"}

	if err := (clientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != "10.96.0.17" || !reflect.DeepEqual(svc.Spec.ClusterIPs, []string{"10.96.0.17"}) {
		t.Errorf("clusterIP %q %v, want the allocated 10.96.0.17 kept", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
	}
	if svc.Spec.Ports[0].NodePort != 31234 || svc.Spec.Ports[0].Port != 8088 {
		t.Errorf("ports %+v, want port 8088 with the allocated node port 31234", svc.Spec.Ports)
	}
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityNone || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("defaulted fields dropped: %+v", svc.Spec)
	}
	if svc.Labels["team"] != "chat" || svc.Annotations["other.tool/seen"] != "yes" {
		t.Errorf("another tool's label or annotation dropped: %v %v", svc.Labels, svc.Annotations)
	}

	// A LoadBalancer keeps the node port too.
	cc.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
	if err := (clientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].NodePort != 31234 {
		t.Errorf("LoadBalancer: type %s ports %+v, want the node port 31234 kept", svc.Spec.Type, svc.Spec.Ports)
	}

	// The spec's node port wins over the allocated one.
	cc.Spec.Service.NodePort = ptr.To[int32](30080)
	if err := (clientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("node port %d, want the spec's 30080", svc.Spec.Ports[0].NodePort)
	}

	// Back to ClusterIP: no node port (the API server refuses one), the
	// clusterIP still kept.
	cc.Spec.Service = chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}
	if err := (clientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Ports[0].NodePort != 0 || svc.Spec.Ports[0].Port != 80 || svc.Spec.ClusterIP != "10.96.0.17" {
		t.Errorf("ClusterIP: ports %+v clusterIP %q, want port 80, no node port, clusterIP kept", svc.Spec.Ports, svc.Spec.ClusterIP)
	}
}

// TestClientServiceAnnotations: the spec's annotations are set, one removed
// from the spec is removed, another tool's stays.
func TestClientServiceAnnotations(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.Service.Annotations = map[string]string{"lb.example/internal": "true", "lb.example/idle": "60"}
	svc := stored(build(t, clientServiceBuilder{}, cc).(*corev1.Service))
	svc.Annotations["other.tool/seen"] = "yes"
	cc.Spec.Service.Annotations = map[string]string{"lb.example/idle": "120"}
	if err := (clientServiceBuilder{}).Update(cc, svc); err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.Annotations["lb.example/internal"]; ok || svc.Annotations["lb.example/idle"] != "120" || svc.Annotations["other.tool/seen"] != "yes" {
		t.Errorf("annotations %v: want lb.example/idle=120 and other.tool/seen, not lb.example/internal", svc.Annotations)
	}
}

func TestHeadlessService(t *testing.T) {
	cc := testCluster(3)
	svc := build(t, headlessServiceBuilder{}, cc).(*corev1.Service)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("type %s clusterIP %q, want headless (None)", svc.Spec.Type, svc.Spec.ClusterIP)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("publishNotReadyAddresses false: chatd pods become ready only after they found each other through this Service")
	}
	want := []corev1.ServicePort{
		{Name: "gossip-tcp", Protocol: corev1.ProtocolTCP, Port: 7946, TargetPort: intstr.FromString("gossip-tcp")},
		{Name: "gossip-udp", Protocol: corev1.ProtocolUDP, Port: 7946, TargetPort: intstr.FromString("gossip-udp")},
		{Name: "rpc", Protocol: corev1.ProtocolTCP, Port: 7947, TargetPort: intstr.FromString("rpc")},
	}
	if !reflect.DeepEqual(svc.Spec.Ports, want) {
		t.Errorf("ports %+v\nwant %+v", svc.Spec.Ports, want)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, cc.SelectorLabels()) {
		t.Errorf("selector %v, want %v", svc.Spec.Selector, cc.SelectorLabels())
	}
	// The container ports the target ports name exist, with the same
	// protocols.
	c := podTemplate(cc, desiredConfig(cc, replicaPlan{3, 3}, nil)).Spec.Containers[0]
	for _, p := range want {
		found := false
		for _, cp := range c.Ports {
			found = found || (cp.Name == p.TargetPort.StrVal && cp.Protocol == p.Protocol && cp.ContainerPort == p.Port)
		}
		if !found {
			t.Errorf("no container port %s/%s %d for the headless Service's %s", p.TargetPort.StrVal, p.Protocol, p.Port, p.Name)
		}
	}
}

func TestPDB(t *testing.T) {
	cc := testCluster(5)
	pdb := build(t, pdbBuilder{}, cc).(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil {
		t.Errorf("default budget maxUnavailable %v minAvailable %v, want maxUnavailable 1 only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
	if pdb.Spec.Selector == nil || !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, cc.SelectorLabels()) {
		t.Errorf("selector %v, want %v", pdb.Spec.Selector, cc.SelectorLabels())
	}

	// The spec's minAvailable replaces the default on the stored object.
	stored(pdb)
	cc.Spec.PodDisruptionBudget = &chatv1alpha1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromString("60%"))}
	if err := (pdbBuilder{}).Update(cc, pdb); err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MaxUnavailable != nil || pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromString("60%") {
		t.Errorf("budget maxUnavailable %v minAvailable %v, want minAvailable 60%% only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}

	// And the spec's maxUnavailable replaces minAvailable.
	cc.Spec.PodDisruptionBudget = &chatv1alpha1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(2))}
	if err := (pdbBuilder{}).Update(cc, pdb); err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(2) {
		t.Errorf("budget maxUnavailable %v minAvailable %v, want maxUnavailable 2 only", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
}

func TestServiceAccountMountsNoToken(t *testing.T) {
	cc := testCluster(3)
	sa := build(t, serviceAccountBuilder{}, cc).(*corev1.ServiceAccount)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken %v, want false", sa.AutomountServiceAccountToken)
	}
}

func TestConfigMap(t *testing.T) {
	cc := testCluster(3)
	cfg := desiredConfig(cc, replicaPlan{3, 3}, []string{"jwt:abc"})
	cm := stored(build(t, configMapBuilder{config: cfg}, cc).(*corev1.ConfigMap))
	if !reflect.DeepEqual(cm.Data, cfg.Data) || cm.Annotations[chatv1alpha1.AnnotationConfigHash] != cfg.Hash {
		t.Errorf("data %v hash %q, want %v %q", cm.Data, cm.Annotations[chatv1alpha1.AnnotationConfigHash], cfg.Data, cfg.Hash)
	}
	// Edits by hand are undone; other tools' labels stay.
	cm.Data[configMapArgsKey] = "--allow-anonymous=false\n"
	cm.Data["extra"] = "x"
	cm.BinaryData = map[string][]byte{"blob": {1}}
	cm.Labels["team"] = "chat"
	if err := (configMapBuilder{config: cfg}).Update(cc, cm); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cm.Data, cfg.Data) || cm.BinaryData != nil || cm.Labels["team"] != "chat" {
		t.Errorf("data %v binaryData %v labels %v: want the configuration restored and the label kept", cm.Data, cm.BinaryData, cm.Labels)
	}
}

func TestGossipSecretGenerated(t *testing.T) {
	cc := testCluster(3)
	a := build(t, gossipSecretBuilder{}, cc).(*corev1.Secret)
	b := build(t, gossipSecretBuilder{}, cc).(*corev1.Secret)
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
		s := stored(build(t, gossipSecretBuilder{}, cc).(*corev1.Secret))
		edit(s)
		before := s.DeepCopy()
		if err := (gossipSecretBuilder{}).Update(cc, s); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(before, s) {
			t.Errorf("%s: Update changed the existing Secret: labels %v → %v, data changed: %t, immutable %v → %v",
				name, before.Labels, s.Labels, !reflect.DeepEqual(before.Data, s.Data), ptr.Deref(before.Immutable, false), ptr.Deref(s.Immutable, false))
		}
	}
}

// stsFixture is a ChatCluster, its configuration and a StatefulSet builder.
type stsFixture struct {
	cc  *chatv1alpha1.ChatCluster
	b   statefulSetBuilder
	now time.Time
}

func newStsFixture() *stsFixture {
	cc := testCluster(3)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	plan := replicaPlan{3, 3}
	return &stsFixture{cc: cc, now: now, b: statefulSetBuilder{config: desiredConfig(cc, plan, nil), plan: plan, now: now}}
}

// update runs the builder on sts with f's current spec.
func (f *stsFixture) update(t *testing.T, sts *appsv1.StatefulSet) {
	t.Helper()
	f.b.config = desiredConfig(f.cc, f.b.plan, nil)
	if err := f.b.Update(f.cc, sts); err != nil {
		t.Fatal(err)
	}
}

// apiServerDefaults sets on a pod template some of the fields the API
// server defaults (the operator's template leaves them empty).
func apiServerDefaults(tpl *corev1.PodTemplateSpec) {
	s := &tpl.Spec
	s.RestartPolicy = corev1.RestartPolicyAlways
	s.DNSPolicy = corev1.DNSClusterFirst
	s.SchedulerName = corev1.DefaultSchedulerName
	s.SecurityContext.SupplementalGroupsPolicy = ptr.To(corev1.SupplementalGroupsPolicyMerge)
	for i := range s.Containers {
		c := &s.Containers[i]
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
}

// storedSts is a StatefulSet the builder created, as the API server
// returns it: stored, with defaults.
func (f *stsFixture) storedSts(t *testing.T) *appsv1.StatefulSet {
	t.Helper()
	sts := stored(build(t, f.b, f.cc).(*appsv1.StatefulSet))
	apiServerDefaults(&sts.Spec.Template)
	sts.Spec.RevisionHistoryLimit = ptr.To[int32](10)
	sts.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(1))
	return sts
}

// stsDiff names the parts of a StatefulSet that differ; nil when none.
func stsDiff(a, b *appsv1.StatefulSet) []string {
	var d []string
	for _, part := range []struct {
		name string
		a, b any
	}{
		{"labels", a.Labels, b.Labels},
		{"annotations", a.Annotations, b.Annotations},
		{"replicas", a.Spec.Replicas, b.Spec.Replicas},
		{"updateStrategy", a.Spec.UpdateStrategy, b.Spec.UpdateStrategy},
		{"template metadata", a.Spec.Template.ObjectMeta, b.Spec.Template.ObjectMeta},
		{"template spec", a.Spec.Template.Spec, b.Spec.Template.Spec},
		{"StatefulSet", a, b},
	} {
		if !equality.Semantic.DeepEqual(part.a, part.b) {
			d = append(d, part.name)
		}
	}
	return d
}

func TestStatefulSetNew(t *testing.T) {
	f := newStsFixture()
	sts := build(t, f.b, f.cc).(*appsv1.StatefulSet)
	if sts.Spec.Selector == nil || !reflect.DeepEqual(sts.Spec.Selector.MatchLabels, f.cc.SelectorLabels()) ||
		sts.Spec.ServiceName != "prod-headless" || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("selector %v serviceName %q podManagementPolicy %q, want the selector labels, prod-headless, Parallel",
			sts.Spec.Selector, sts.Spec.ServiceName, sts.Spec.PodManagementPolicy)
	}
	if ptr.Deref(sts.Spec.Replicas, -1) != 3 {
		t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
	}
	u := sts.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateStatefulSetStrategyType || u.RollingUpdate == nil || ptr.Deref(u.RollingUpdate.Partition, -1) != 0 {
		t.Errorf("update strategy %+v, want RollingUpdate with partition 0", u)
	}
	want := podTemplate(f.cc, f.b.config)
	if !equality.Semantic.DeepEqual(sts.Spec.Template, want) {
		t.Errorf("template differs from podTemplate()")
	}
	if !reflect.DeepEqual(sts.Spec.Template.Labels, withLabels(nil, commonLabels(f.cc))) {
		t.Errorf("pod labels %v, want the common labels", sts.Spec.Template.Labels)
	}
	digest, err := templateDigest(want)
	if err != nil {
		t.Fatal(err)
	}
	if sts.Annotations[annotationTemplateHash] != digest {
		t.Errorf("%s = %q, want the template's digest %q", annotationTemplateHash, sts.Annotations[annotationTemplateHash], digest)
	}
	if sts.Annotations[annotationExpectedNodes] != "3" || sts.Annotations[annotationExpectedNodesChanged] != f.now.Format(time.RFC3339Nano) {
		t.Errorf("annotations %v, want expected nodes 3 changed at %s", sts.Annotations, f.now.Format(time.RFC3339Nano))
	}
}

// TestStatefulSetUnchangedTemplateIsKept: a reconcile with the same spec
// leaves the stored template as the API server returned it (defaults and
// all), so nothing is written and no pod rolls.
func TestStatefulSetUnchangedTemplateIsKept(t *testing.T) {
	f := newStsFixture()
	sts := f.storedSts(t)
	sts.Labels["team"] = "chat"
	sts.Annotations["other.tool/seen"] = "yes"
	before := sts.DeepCopy()
	f.b.now = f.now.Add(time.Hour)
	f.update(t, sts)
	if d := stsDiff(before, sts); d != nil {
		t.Errorf("Update changed a StatefulSet whose spec did not change: %v", d)
	}
}

// TestStatefulSetTemplateReplacedOnChange: the template is replaced when
// the operator's fields differ (edited by hand) and when the desired
// template changed in a way DeepDerivative cannot see (a removed
// toleration), thanks to the digest annotation.
func TestStatefulSetTemplateReplacedOnChange(t *testing.T) {
	t.Run("field edited by hand", func(t *testing.T) {
		f := newStsFixture()
		sts := f.storedSts(t)
		sts.Spec.Template.Spec.Containers[0].Image = "evil/chatd:latest"
		f.update(t, sts)
		if got := sts.Spec.Template.Spec.Containers[0].Image; got != f.cc.ImageOrDefault() {
			t.Errorf("image %q, want the spec's %q restored", got, f.cc.ImageOrDefault())
		}
	})
	t.Run("toleration removed from the spec", func(t *testing.T) {
		f := newStsFixture()
		tol := corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "chat", Effect: corev1.TaintEffectNoSchedule}
		f.cc.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Tolerations: []corev1.Toleration{tol}}
		f.b.config = desiredConfig(f.cc, f.b.plan, nil)
		sts := f.storedSts(t)
		if !reflect.DeepEqual(sts.Spec.Template.Spec.Tolerations, []corev1.Toleration{tol}) {
			t.Fatalf("tolerations %v, want %v", sts.Spec.Template.Spec.Tolerations, tol)
		}
		f.cc.Spec.PodTemplate = nil
		desired := podTemplate(f.cc, desiredConfig(f.cc, f.b.plan, nil))
		if !equality.Semantic.DeepDerivative(desired, sts.Spec.Template) {
			t.Fatalf("DeepDerivative sees the removal; this case no longer shows the digest's use")
		}
		f.update(t, sts)
		if len(sts.Spec.Template.Spec.Tolerations) != 0 {
			t.Errorf("tolerations %v kept after their removal from the spec", sts.Spec.Template.Spec.Tolerations)
		}
		digest, _ := templateDigest(desired)
		if sts.Annotations[annotationTemplateHash] != digest {
			t.Errorf("digest %q, want the new template's %q", sts.Annotations[annotationTemplateHash], digest)
		}
	})
	t.Run("configuration changed", func(t *testing.T) {
		f := newStsFixture()
		sts := f.storedSts(t)
		old := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
		f.cc.Spec.HistorySize = 5000
		f.update(t, sts)
		if got := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]; got == old || got != f.b.config.Hash {
			t.Errorf("config hash %q (was %q), want the new %q", got, old, f.b.config.Hash)
		}
	})
}

// TestStatefulSetKeepsRolloutRestart: `kubectl rollout restart`'s annotation
// stays on the template, across unchanged reconciles and spec changes.
func TestStatefulSetKeepsRolloutRestart(t *testing.T) {
	f := newStsFixture()
	sts := f.storedSts(t)
	const at = "2026-03-01T12:30:00Z"
	sts.Spec.Template.Annotations[annotationRestartedAt] = at
	f.update(t, sts)
	if got := sts.Spec.Template.Annotations[annotationRestartedAt]; got != at {
		t.Errorf("restartedAt %q after a reconcile, want %q", got, at)
	}
	before := sts.DeepCopy()
	f.update(t, sts)
	if d := stsDiff(before, sts); d != nil {
		t.Errorf("a second reconcile after the restart changed the StatefulSet: %v", d)
	}
	f.cc.Spec.HistorySize = 2000
	f.update(t, sts)
	if got := sts.Spec.Template.Annotations[annotationRestartedAt]; got != at {
		t.Errorf("restartedAt %q after a spec change, want %q", got, at)
	}
}

// TestStatefulSetImmutableFieldsOnlyAtCreation: selector, serviceName and
// podManagementPolicy are set on a new StatefulSet only; an update leaves
// them as stored (the API server refuses to change them).
func TestStatefulSetImmutableFieldsOnlyAtCreation(t *testing.T) {
	f := newStsFixture()
	sts := f.storedSts(t)
	sts.Spec.ServiceName = "older-headless"
	sts.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "old"}}
	sts.Spec.Selector = sel
	f.update(t, sts)
	if sts.Spec.ServiceName != "older-headless" || sts.Spec.PodManagementPolicy != appsv1.OrderedReadyPodManagement || sts.Spec.Selector != sel {
		t.Errorf("immutable fields changed: %q %q %v", sts.Spec.ServiceName, sts.Spec.PodManagementPolicy, sts.Spec.Selector)
	}
}

// TestStatefulSetExpectedNodes: the expected cluster size and when it last
// changed; the time moves only with the size.
func TestStatefulSetExpectedNodes(t *testing.T) {
	f := newStsFixture()
	sts := f.storedSts(t)
	first := sts.Annotations[annotationExpectedNodesChanged]
	f.b.now = f.now.Add(time.Minute)
	f.update(t, sts)
	if got := sts.Annotations[annotationExpectedNodesChanged]; got != first {
		t.Errorf("changed-at moved from %s to %s with the size unchanged", first, got)
	}
	f.b.plan = replicaPlan{Replicas: 3, ExpectedNodes: 5}
	f.update(t, sts)
	if sts.Annotations[annotationExpectedNodes] != strconv.Itoa(5) || sts.Annotations[annotationExpectedNodesChanged] != f.b.now.Format(time.RFC3339Nano) {
		t.Errorf("annotations %v, want expected nodes 5 changed at %s", sts.Annotations, f.b.now.Format(time.RFC3339Nano))
	}
	if ptr.Deref(sts.Spec.Replicas, -1) != 3 {
		t.Errorf("replicas %v, want the plan's 3", sts.Spec.Replicas)
	}
}

// TestPodTemplateOverridesCannotReplaceTheOperators: podTemplate labels
// and env add to the operator's, never replace them.
func TestPodTemplateOverridesCannotReplaceTheOperators(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{
		Labels: map[string]string{"team": "chat", labelManagedBy: "someone-else"},
		Env:    []corev1.EnvVar{{Name: "CHATD_LOG_LEVEL", Value: "debug"}, {Name: envPodName, Value: "fake"}},
	}
	tpl := podTemplate(cc, desiredConfig(cc, replicaPlan{3, 3}, nil))
	want := maps.Clone(commonLabels(cc))
	want["team"] = "chat"
	if !reflect.DeepEqual(tpl.Labels, want) {
		t.Errorf("pod labels %v, want %v", tpl.Labels, want)
	}
	var names []string
	for _, e := range tpl.Spec.Containers[0].Env {
		names = append(names, e.Name)
		if e.Name == envPodName && e.ValueFrom == nil {
			t.Errorf("the spec replaced %s: %+v", envPodName, e)
		}
	}
	if n := len(names); n != 5 || names[n-1] != "CHATD_LOG_LEVEL" {
		t.Errorf("env %v, want the operator's four and CHATD_LOG_LEVEL", names)
	}
}

// withStorage gives f's ChatCluster a volume of size.
func (f *stsFixture) withStorage(size string) *stsFixture {
	f.cc.Spec.Storage = &chatv1alpha1.StorageSpec{Size: resource.MustParse(size), StorageClassName: "fast"}
	f.b.config = desiredConfig(f.cc, f.b.plan, nil)
	return f
}

// TestStatefulSetStorage: with spec.storage the StatefulSet gets one
// ReadWriteOnce claim template of the spec's size and class, labelled with
// the cluster's labels; the chatd container mounts it at its --data-dir;
// the pods skip the recursive ownership walk; claims are kept when the
// StatefulSet is deleted and deleted when their pod is scaled away.
func TestStatefulSetStorage(t *testing.T) {
	f := newStsFixture().withStorage("5Gi")
	sts := build(t, f.b, f.cc).(*appsv1.StatefulSet)
	if n := len(sts.Spec.VolumeClaimTemplates); n != 1 {
		t.Fatalf("%d volumeClaimTemplates, want 1", n)
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if vct.Name != chatv1alpha1.DataVolumeName || !reflect.DeepEqual(vct.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) ||
		ptr.Deref(vct.Spec.StorageClassName, "") != "fast" {
		t.Errorf("claim template %s %v class %v, want data ReadWriteOnce fast", vct.Name, vct.Spec.AccessModes, vct.Spec.StorageClassName)
	}
	if got := vct.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("5Gi")) != 0 {
		t.Errorf("claim template requests %s, want 5Gi", got.String())
	}
	for k, v := range f.cc.SelectorLabels() {
		if vct.Labels[k] != v {
			t.Errorf("claim template label %s = %q, want %q (claims are listed by the selector labels)", k, vct.Labels[k], v)
		}
	}
	c := findContainer(sts.Spec.Template.Spec.Containers, containerName)
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == chatv1alpha1.DataVolumeName && m.MountPath == chatv1alpha1.DataMountPath && !m.ReadOnly
	}) {
		t.Errorf("no writable mount of %s at %s: %+v", chatv1alpha1.DataVolumeName, chatv1alpha1.DataMountPath, c.VolumeMounts)
	}
	if !slices.Contains(c.Args, "--data-dir="+chatv1alpha1.DataMountPath) {
		t.Errorf("args lack --data-dir=%s: %q", chatv1alpha1.DataMountPath, c.Args)
	}
	if p := sts.Spec.Template.Spec.SecurityContext.FSGroupChangePolicy; ptr.Deref(p, "") != corev1.FSGroupChangeOnRootMismatch {
		t.Errorf("fsGroupChangePolicy %v, want OnRootMismatch", p)
	}
	want := appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || *p != want {
		t.Errorf("claim retention policy %+v, want %+v", p, want)
	}
	if g := ptr.Deref(sts.Spec.Template.Spec.TerminationGracePeriodSeconds, 0); g != f.cc.TerminationGracePeriodSeconds() {
		t.Errorf("terminationGracePeriodSeconds %d, want %d", g, f.cc.TerminationGracePeriodSeconds())
	}
}

// TestStatefulSetClaimRetentionFollowsThePlan: scaling to 0 keeps the
// volumes (whenScaled Retain while the plan has no pod), any other plan
// deletes a scaled-away pod's volume; the claim templates, fixed once the
// StatefulSet exists, are left as stored.
func TestStatefulSetClaimRetentionFollowsThePlan(t *testing.T) {
	f := newStsFixture().withStorage("5Gi")
	sts := f.storedSts(t)
	stored := slices.Clone(sts.Spec.VolumeClaimTemplates)
	f.b.plan = replicaPlan{Replicas: 0, ExpectedNodes: 3}
	f.update(t, sts)
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("scaled to 0: policy %+v, want Retain, Retain", p)
	}
	f.b.plan = replicaPlan{Replicas: 2, ExpectedNodes: 3}
	f.cc.Spec.Storage.Size = resource.MustParse("8Gi") // grown: applied to the claims, not the template
	f.update(t, sts)
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p.WhenScaled != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		t.Errorf("at 2 replicas: whenScaled %s, want Delete", p.WhenScaled)
	}
	if !equality.Semantic.DeepEqual(sts.Spec.VolumeClaimTemplates, stored) {
		t.Errorf("the claim templates changed on an existing StatefulSet (the API server refuses that)")
	}
}

// TestStatefulSetMemoryOnly: without spec.storage, no claim template, no
// data mount, no fsGroupChangePolicy, and the API server's default
// retention policy, so that an existing memory-only StatefulSet is not
// written again.
func TestStatefulSetMemoryOnly(t *testing.T) {
	f := newStsFixture()
	sts := build(t, f.b, f.cc).(*appsv1.StatefulSet)
	c := findContainer(sts.Spec.Template.Spec.Containers, containerName)
	if len(sts.Spec.VolumeClaimTemplates) != 0 || sts.Spec.Template.Spec.SecurityContext.FSGroupChangePolicy != nil ||
		slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == chatv1alpha1.DataVolumeName }) {
		t.Errorf("memory-only StatefulSet has storage: templates %v, mounts %v", sts.Spec.VolumeClaimTemplates, c.VolumeMounts)
	}
	want := appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || *p != want {
		t.Errorf("claim retention policy %+v, want the default %+v", p, want)
	}
}
