package controllers

// spec.storage against a real API server: the StatefulSet's claim template
// and retention policy, the claims grown when spec.storage.size grows (the
// API server's PersistentVolumeClaimResize admission decides whether the
// StorageClass allows it), and status.storage. envtest has no StatefulSet
// or volume controllers: the tests create the claims as the StatefulSet
// controller names and labels them, and bind them by writing their status
// as the volume controller would.

import (
	"context"
	"fmt"
	"slices"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// storageClass creates a StorageClass (cluster-wide, so named uniquely)
// that allows volume expansion or not, and returns its name.
func (s *suite) storageClass(t *testing.T, expandable bool) string {
	t.Helper()
	sc := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: "sc-" + utilrand.String(8)},
		Provisioner:          "example.com/none",
		AllowVolumeExpansion: ptr.To(expandable),
	}
	if err := s.admin.Create(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.admin.Delete(context.Background(), sc) })
	return sc.Name
}

// boundClaims creates cc's data claims for ordinals 0..n-1 from the
// StatefulSet's claim template, as the StatefulSet controller does, and
// binds each to a volume of the requested size, as the volume controller
// does.
func (s *suite) boundClaims(t *testing.T, cc *chatv1alpha1.ChatCluster, sts *appsv1.StatefulSet, n int32) {
	t.Helper()
	ctx := context.Background()
	tpl := sts.Spec.VolumeClaimTemplates[0]
	for i := range n {
		c := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: cc.Namespace, Name: cc.DataClaimName(i), Labels: sts.Spec.Selector.MatchLabels},
			Spec:       *tpl.Spec.DeepCopy(),
		}
		if err := s.admin.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.Status = corev1.PersistentVolumeClaimStatus{
			Phase:       corev1.ClaimBound,
			AccessModes: c.Spec.AccessModes,
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: c.Spec.Resources.Requests[corev1.ResourceStorage]},
		}
		if err := s.admin.Status().Update(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
}

// waitStorageStatus waits for cc's status.storage to satisfy ok.
func (s *suite) waitStorageStatus(t *testing.T, cc *chatv1alpha1.ChatCluster, what string, ok func(*chatv1alpha1.StorageStatus) error) {
	t.Helper()
	eventually(t, what, func() error {
		got := &chatv1alpha1.ChatCluster{}
		if err := s.admin.Get(context.Background(), client.ObjectKeyFromObject(cc), got); err != nil {
			return err
		}
		if got.Status.Storage == nil {
			return fmt.Errorf("no status.storage")
		}
		return ok(got.Status.Storage)
	})
}

// claimRequests reads the storage request of each of cc's first n claims.
func (s *suite) claimRequests(cc *chatv1alpha1.ChatCluster, n int32) ([]string, error) {
	var out []string
	for i := range n {
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: cc.Namespace, Name: cc.DataClaimName(i)}}
		if err := s.get(c); err != nil {
			return nil, err
		}
		q := c.Spec.Resources.Requests[corev1.ResourceStorage]
		out = append(out, q.String())
	}
	return out, nil
}

// TestStorageStatefulSet: a ChatCluster with storage gets a StatefulSet with
// the claim template (size, class, labels), the retention policy (kept when
// deleted, deleted when scaled, kept when scaled to 0), chatd's storage
// flags and the volume mounted at its data directory; its status says
// Persistent and counts the bound claims. A memory-only one says Memory.
func TestStorageStatefulSet(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	class := s.storageClass(t, true)

	mem := sample(t, ns)
	mem.Name = "mem"
	s.create(t, mem)
	s.waitStorageStatus(t, mem, "memory-only status", func(st *chatv1alpha1.StorageStatus) error {
		if st.Mode != chatv1alpha1.StorageModeMemory {
			return fmt.Errorf("mode %s, want Memory", st.Mode)
		}
		return nil
	})

	cc := sample(t, ns)
	cc.Spec.Storage = &chatv1alpha1.StorageSpec{
		Size:             resource.MustParse("1Gi"),
		StorageClassName: class,
		Retention:        chatv1alpha1.RetentionSpec{MaxAge: dur(0), MaxMessages: ptr.To[int64](10000)},
	}
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	if n := len(sts.Spec.VolumeClaimTemplates); n != 1 {
		t.Fatalf("%d claim templates, want 1", n)
	}
	tpl := sts.Spec.VolumeClaimTemplates[0]
	if req := tpl.Spec.Resources.Requests[corev1.ResourceStorage]; tpl.Name != "data" || req.String() != "1Gi" ||
		ptr.Deref(tpl.Spec.StorageClassName, "") != class || tpl.Labels[chatv1alpha1.LabelCluster] != cc.Name {
		t.Errorf("claim template %s: %s of %v, labels %v", tpl.Name, req.String(), tpl.Spec.StorageClassName, tpl.Labels)
	}
	wantPolicy := appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || *p != wantPolicy {
		t.Errorf("retention policy %+v, want %+v", p, wantPolicy)
	}
	for _, a := range []string{"--data-dir=/var/lib/chatd", "--history-retention=0s", "--history-max-messages=10000", "--storage-reserve-bytes=268435456"} {
		if err := hasArg(sts, a); err != nil {
			t.Error(err)
		}
	}
	c := findContainer(sts.Spec.Template.Spec.Containers, chatdconfig.ContainerName)
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "data" && m.MountPath == "/var/lib/chatd" }) {
		t.Errorf("no data mount at /var/lib/chatd: %+v", c.VolumeMounts)
	}
	s.waitStorageStatus(t, cc, "persistent, no claim yet", func(st *chatv1alpha1.StorageStatus) error {
		if st.Mode != chatv1alpha1.StorageModePersistent || st.Claims != 0 {
			return fmt.Errorf("status.storage %+v, want Persistent with no claim", st)
		}
		return nil
	})

	s.boundClaims(t, cc, sts, 3)
	s.waitStorageStatus(t, cc, "three bound claims", func(st *chatv1alpha1.StorageStatus) error {
		if st.Claims != 3 || st.BoundClaims != 3 || st.Capacity == nil || st.Capacity.String() != "1Gi" {
			return fmt.Errorf("status.storage %+v (capacity %v), want 3 claims bound, 1Gi", st, st.Capacity)
		}
		return nil
	})

	// A reconcile that changes nothing writes nothing, claims included.
	objs := children(cc)
	for i := range int32(3) {
		objs = append(objs, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.DataClaimName(i)}})
	}
	versions := map[string]string{}
	for _, o := range objs {
		if err := s.get(o); err != nil {
			t.Fatal(err)
		}
		versions[fmt.Sprintf("%T/%s", o, o.GetName())] = o.GetResourceVersion()
	}
	rec := events.NewFakeRecorder(100)
	r := &ChatClusterReconciler{Client: s.admin, Scheme: s.scheme, Recorder: rec, OperatorNamespace: suiteOperatorNamespace}
	for range 2 {
		if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(cc)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range objs {
		if err := s.get(o); err != nil {
			t.Fatal(err)
		}
		if k := fmt.Sprintf("%T/%s", o, o.GetName()); versions[k] != o.GetResourceVersion() {
			t.Errorf("%s was written again by a reconcile that had nothing to do", k)
		}
	}
	if len(rec.Events) > 0 {
		t.Errorf("events from a reconcile that changed nothing: %s", <-rec.Events)
	}

	// Scaling to 0 keeps the volumes; scaling up again deletes a scaled-away
	// pod's.
	policy := func(whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) func(*appsv1.StatefulSet) error {
		return func(sts *appsv1.StatefulSet) error {
			p := sts.Spec.PersistentVolumeClaimRetentionPolicy
			if p == nil || p.WhenScaled != whenScaled || p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
				return fmt.Errorf("replicas %d, retention policy %+v, want whenScaled %s", ptr.Deref(sts.Spec.Replicas, -1), p, whenScaled)
			}
			return nil
		}
	}
	s.update(t, cc, func() { cc.Spec.Replicas = ptr.To[int32](0) })
	s.waitSts(t, cc, "scaled to 0, volumes kept", policy(appsv1.RetainPersistentVolumeClaimRetentionPolicyType))
	s.update(t, cc, func() { cc.Spec.Replicas = ptr.To[int32](3) })
	s.waitSts(t, cc, "back at 3", policy(appsv1.DeletePersistentVolumeClaimRetentionPolicyType))
}

// TestStorageGrows: growing spec.storage.size grows every existing claim
// when the StorageClass allows expansion (the claim template stays as it
// was: the API server refuses to change it), and reports
// Degraded=True/VolumeResizeFailed, with an event naming the claim, when it
// does not.
func TestStorageGrows(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	for _, tc := range []struct {
		name       string
		expandable bool
	}{{"expandable", true}, {"fixed", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cc := sample(t, ns)
			cc.Name = tc.name
			cc.Spec.Storage = &chatv1alpha1.StorageSpec{Size: resource.MustParse("1Gi"), StorageClassName: s.storageClass(t, tc.expandable)}
			s.create(t, cc)
			sts := s.waitSts(t, cc, "StatefulSet created", exists)
			s.boundClaims(t, cc, sts, 2)
			s.waitStorageStatus(t, cc, "two bound claims", func(st *chatv1alpha1.StorageStatus) error {
				if st.BoundClaims != 2 {
					return fmt.Errorf("status.storage %+v, want 2 bound", st)
				}
				return nil
			})

			s.update(t, cc, func() { cc.Spec.Storage.Size = resource.MustParse("3Gi") })
			if !tc.expandable {
				s.waitCondition(t, cc, chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, chatv1alpha1.ReasonVolumeResizeFailed)
				s.waitEvent(t, ns, cc.Name, chatv1alpha1.ReasonVolumeResizeFailed, "PersistentVolumeClaim "+cc.DataClaimName(0)+" to 3Gi")
				if got, err := s.claimRequests(cc, 2); err != nil || !slices.Equal(got, []string{"1Gi", "1Gi"}) {
					t.Errorf("claims request %v (%v), want both still 1Gi", got, err)
				}
				return
			}
			eventually(t, "claims grown to 3Gi", func() error {
				got, err := s.claimRequests(cc, 2)
				if err != nil {
					return err
				}
				if !slices.Equal(got, []string{"3Gi", "3Gi"}) {
					return fmt.Errorf("claims request %v, want 3Gi each", got)
				}
				return nil
			})
			if err := s.get(sts); err != nil {
				t.Fatal(err)
			}
			if req := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; req.String() != "1Gi" {
				t.Errorf("claim template requests %s, want the 1Gi it was created with", req.String())
			}
			// The volumes have not grown yet: the status shows the smallest
			// capacity, 1Gi, and nothing is degraded.
			s.waitStorageStatus(t, cc, "capacity still 1Gi", func(st *chatv1alpha1.StorageStatus) error {
				if st.Capacity == nil || st.Capacity.String() != "1Gi" {
					return fmt.Errorf("capacity %v, want 1Gi", st.Capacity)
				}
				return nil
			})
			s.waitCondition(t, cc, chatv1alpha1.ConditionDegraded, metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected)
		})
	}
}
