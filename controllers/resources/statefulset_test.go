package resources

import (
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// stsFixture is a ChatCluster, its configuration and a StatefulSet builder.
type stsFixture struct {
	cc  *chatv1alpha1.ChatCluster
	b   StatefulSetBuilder
	now time.Time
}

func newStsFixture() *stsFixture {
	cc := testCluster(3)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	plan := scaling.Plan{Replicas: 3, ExpectedNodes: 3}
	return &stsFixture{cc: cc, now: now, b: StatefulSetBuilder{Config: chatdconfig.Desired(cc, plan.ExpectedNodes, nil), Plan: plan, Now: now}}
}

// update runs the builder on sts with f's current spec.
func (f *stsFixture) update(t *testing.T, sts *appsv1.StatefulSet) {
	t.Helper()
	f.b.Config = chatdconfig.Desired(f.cc, f.b.Plan.ExpectedNodes, nil)
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
	want := PodTemplate(f.cc, f.b.Config)
	if !equality.Semantic.DeepEqual(sts.Spec.Template, want) {
		t.Errorf("template differs from PodTemplate()")
	}
	if !reflect.DeepEqual(sts.Spec.Template.Labels, withLabels(nil, CommonLabels(f.cc))) {
		t.Errorf("pod labels %v, want the common labels", sts.Spec.Template.Labels)
	}
	digest, err := TemplateDigest(want)
	if err != nil {
		t.Fatal(err)
	}
	if sts.Annotations[AnnotationTemplateHash] != digest {
		t.Errorf("%s = %q, want the template's digest %q", AnnotationTemplateHash, sts.Annotations[AnnotationTemplateHash], digest)
	}
	if sts.Annotations[scaling.AnnotationExpectedNodes] != "3" || sts.Annotations[scaling.AnnotationExpectedNodesChanged] != f.now.Format(time.RFC3339Nano) {
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
	f.b.Now = f.now.Add(time.Hour)
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
		f.b.Config = chatdconfig.Desired(f.cc, f.b.Plan.ExpectedNodes, nil)
		sts := f.storedSts(t)
		if !reflect.DeepEqual(sts.Spec.Template.Spec.Tolerations, []corev1.Toleration{tol}) {
			t.Fatalf("tolerations %v, want %v", sts.Spec.Template.Spec.Tolerations, tol)
		}
		f.cc.Spec.PodTemplate = nil
		desired := PodTemplate(f.cc, chatdconfig.Desired(f.cc, f.b.Plan.ExpectedNodes, nil))
		if !equality.Semantic.DeepDerivative(desired, sts.Spec.Template) {
			t.Fatalf("DeepDerivative sees the removal; this case no longer shows the digest's use")
		}
		f.update(t, sts)
		if len(sts.Spec.Template.Spec.Tolerations) != 0 {
			t.Errorf("tolerations %v kept after their removal from the spec", sts.Spec.Template.Spec.Tolerations)
		}
		digest, _ := TemplateDigest(desired)
		if sts.Annotations[AnnotationTemplateHash] != digest {
			t.Errorf("digest %q, want the new template's %q", sts.Annotations[AnnotationTemplateHash], digest)
		}
	})
	t.Run("configuration changed", func(t *testing.T) {
		f := newStsFixture()
		sts := f.storedSts(t)
		old := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
		f.cc.Spec.HistorySize = 5000
		f.update(t, sts)
		if got := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]; got == old || got != f.b.Config.Hash {
			t.Errorf("config hash %q (was %q), want the new %q", got, old, f.b.Config.Hash)
		}
	})
}

// TestStatefulSetKeepsRolloutRestart: `kubectl rollout restart`'s annotation
// stays on the template, across unchanged reconciles and spec changes.
func TestStatefulSetKeepsRolloutRestart(t *testing.T) {
	f := newStsFixture()
	sts := f.storedSts(t)
	const at = "2026-03-01T12:30:00Z"
	sts.Spec.Template.Annotations[AnnotationRestartedAt] = at
	f.update(t, sts)
	if got := sts.Spec.Template.Annotations[AnnotationRestartedAt]; got != at {
		t.Errorf("restartedAt %q after a reconcile, want %q", got, at)
	}
	before := sts.DeepCopy()
	f.update(t, sts)
	if d := stsDiff(before, sts); d != nil {
		t.Errorf("a second reconcile after the restart changed the StatefulSet: %v", d)
	}
	f.cc.Spec.HistorySize = 2000
	f.update(t, sts)
	if got := sts.Spec.Template.Annotations[AnnotationRestartedAt]; got != at {
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
	first := sts.Annotations[scaling.AnnotationExpectedNodesChanged]
	f.b.Now = f.now.Add(time.Minute)
	f.update(t, sts)
	if got := sts.Annotations[scaling.AnnotationExpectedNodesChanged]; got != first {
		t.Errorf("changed-at moved from %s to %s with the size unchanged", first, got)
	}
	f.b.Plan = scaling.Plan{Replicas: 3, ExpectedNodes: 5}
	f.update(t, sts)
	if sts.Annotations[scaling.AnnotationExpectedNodes] != strconv.Itoa(5) || sts.Annotations[scaling.AnnotationExpectedNodesChanged] != f.b.Now.Format(time.RFC3339Nano) {
		t.Errorf("annotations %v, want expected nodes 5 changed at %s", sts.Annotations, f.b.Now.Format(time.RFC3339Nano))
	}
	if ptr.Deref(sts.Spec.Replicas, -1) != 3 {
		t.Errorf("replicas %v, want the plan's 3", sts.Spec.Replicas)
	}
}

// withStorage gives f's ChatCluster a volume of size.
func (f *stsFixture) withStorage(size string) *stsFixture {
	f.cc.Spec.Storage = &chatv1alpha1.StorageSpec{Size: resource.MustParse(size), StorageClassName: "fast"}
	f.b.Config = chatdconfig.Desired(f.cc, f.b.Plan.ExpectedNodes, nil)
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
	c := findContainer(sts.Spec.Template.Spec.Containers, chatdconfig.ContainerName)
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
	f.b.Plan = scaling.Plan{Replicas: 0, ExpectedNodes: 3}
	f.update(t, sts)
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("scaled to 0: policy %+v, want Retain, Retain", p)
	}
	f.b.Plan = scaling.Plan{Replicas: 2, ExpectedNodes: 3}
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
	c := findContainer(sts.Spec.Template.Spec.Containers, chatdconfig.ContainerName)
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
