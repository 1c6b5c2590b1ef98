package controllers

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	"github.com/ringchat/ringchat/controllers/resources"
	"github.com/ringchat/ringchat/controllers/scaling"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// children are the objects the operator creates for cc, empty, to be read.
func children(cc *chatv1alpha1.ChatCluster) []client.Object {
	m := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: cc.Namespace, Name: name} }
	return []client.Object{
		&corev1.ServiceAccount{ObjectMeta: m(cc.Name)},
		&corev1.ConfigMap{ObjectMeta: m(cc.Name + "-config")},
		&corev1.Secret{ObjectMeta: m(cc.GossipKeyringSecretName())},
		&corev1.Service{ObjectMeta: m(cc.HeadlessServiceName())},
		&corev1.Service{ObjectMeta: m(cc.ServiceName())},
		&appsv1.StatefulSet{ObjectMeta: m(cc.Name)},
		&policyv1.PodDisruptionBudget{ObjectMeta: m(cc.Name)},
		&corev1.Secret{ObjectMeta: m(cc.AdminSecretName())},
		&corev1.Secret{ObjectMeta: m(cc.PeerCASecretName())},
		&corev1.Secret{ObjectMeta: m(cc.PeerTLSSecretName())},
		&corev1.Service{ObjectMeta: m(cc.MetricsServiceName())},
		&networkingv1.NetworkPolicy{ObjectMeta: m(cc.NetworkPolicyName())},
	}
}

func (s *suite) create(t *testing.T, cc *chatv1alpha1.ChatCluster) {
	t.Helper()
	if err := s.admin.Create(context.Background(), cc); err != nil {
		t.Fatalf("creating ChatCluster %s: %v", cc.Name, err)
	}
}

// waitSts waits for cc's StatefulSet to satisfy ok, and returns it.
func (s *suite) waitSts(t *testing.T, cc *chatv1alpha1.ChatCluster, what string, ok func(*appsv1.StatefulSet) error) *appsv1.StatefulSet {
	t.Helper()
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: cc.Namespace, Name: cc.Name}}
	eventually(t, what, func() error {
		if err := s.get(sts); err != nil {
			return err
		}
		return ok(sts)
	})
	return sts
}

func exists(*appsv1.StatefulSet) error { return nil }

// waitCondition waits for cc's condition typ to have status and reason at
// cc's current generation, and returns the ChatCluster as read.
func (s *suite) waitCondition(t *testing.T, cc *chatv1alpha1.ChatCluster, typ string, status metav1.ConditionStatus, reason string) *chatv1alpha1.ChatCluster {
	t.Helper()
	got := &chatv1alpha1.ChatCluster{}
	eventually(t, fmt.Sprintf("%s=%s/%s", typ, status, reason), func() error {
		if err := s.admin.Get(context.Background(), client.ObjectKeyFromObject(cc), got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, typ)
		switch {
		case c == nil:
			return fmt.Errorf("no %s condition: %+v", typ, got.Status.Conditions)
		case c.Status != status || c.Reason != reason || c.ObservedGeneration != got.Generation:
			return fmt.Errorf("%s is %s/%s at generation %d (%s); object generation %d", typ, c.Status, c.Reason, c.ObservedGeneration, c.Message, got.Generation)
		}
		return nil
	})
	return got
}

// setStsStatus plays the StatefulSet controller: every pod exists on the
// current revision, ready of them ready.
func (s *suite) setStsStatus(t *testing.T, cc *chatv1alpha1.ChatCluster, ready int32) {
	t.Helper()
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: cc.Namespace, Name: cc.Name}}
	eventually(t, "writing the StatefulSet status", func() error {
		if err := s.get(sts); err != nil {
			return err
		}
		n := scaling.Replicas(sts)
		sts.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: sts.Generation,
			Replicas:           n, ReadyReplicas: min(ready, n), AvailableReplicas: min(ready, n),
			CurrentReplicas: n, UpdatedReplicas: n,
			CurrentRevision: cc.Name + "-rev", UpdateRevision: cc.Name + "-rev",
		}
		return s.admin.Status().Update(context.Background(), sts)
	})
}

func argsOf(sts *appsv1.StatefulSet) []string {
	if c := findContainer(sts.Spec.Template.Spec.Containers, chatdconfig.ContainerName); c != nil {
		return c.Args
	}
	return nil
}

func hasArg(sts *appsv1.StatefulSet, arg string) error {
	if args := argsOf(sts); !slices.Contains(args, arg) {
		return fmt.Errorf("args lack %s: %q", arg, args)
	}
	return nil
}

func checkOwned(t *testing.T, obj client.Object, cc *chatv1alpha1.ChatCluster) {
	t.Helper()
	ref := metav1.GetControllerOf(obj)
	if ref == nil {
		t.Errorf("%T %s has no controller owner reference", obj, obj.GetName())
		return
	}
	if ref.UID != cc.UID || ref.Kind != "ChatCluster" || ref.Name != cc.Name || ref.APIVersion != chatv1alpha1.GroupVersion.String() ||
		!ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Errorf("%T %s owner reference %+v, want ChatCluster %s (uid %s) blocking deletion", obj, obj.GetName(), *ref, cc.Name, cc.UID)
	}
}

// TestSampleCreatesEveryObject applies config/samples and checks each object
// the operator creates.
func TestSampleCreatesEveryObject(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	for _, obj := range children(cc) {
		eventually(t, fmt.Sprintf("%T %s", obj, obj.GetName()), func() error { return s.get(obj) })
		checkOwned(t, obj, cc)
		if l := obj.GetLabels(); l[chatv1alpha1.LabelCluster] != cc.Name || l[resources.LabelManagedBy] != resources.ManagedByValue {
			t.Errorf("%T %s labels %v", obj, obj.GetName(), l)
		}
	}
	objs := children(cc)
	for _, o := range objs {
		if err := s.get(o); err != nil {
			t.Fatal(err)
		}
	}
	sa, cm, secret, headless, svc, pdb := objs[0].(*corev1.ServiceAccount), objs[1].(*corev1.ConfigMap), objs[2].(*corev1.Secret),
		objs[3].(*corev1.Service), objs[4].(*corev1.Service), objs[6].(*policyv1.PodDisruptionBudget)

	if ptr.Deref(sa.AutomountServiceAccountToken, true) {
		t.Errorf("ServiceAccount mounts a token")
	}

	// Gossip keyring: one random key, base64 of 32 bytes, a line.
	if keys := resources.KeyringKeys(secret.Data[chatv1alpha1.DefaultGossipKeyringKey]); len(keys) != 1 {
		t.Errorf("gossip keyring %q, want one key", keys)
	} else if raw, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(raw) != 32 {
		t.Errorf("gossip key %q: want base64 of 32 bytes (%v)", keys[0], err)
	}

	// Headless Service: every pod, ready or not; gossip TCP+UDP and rpc.
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("headless Service clusterIP %q publishNotReadyAddresses %v", headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
	}
	var ports []string
	for _, p := range headless.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	if want := []string{"7946/TCP", "7946/UDP", "7947/TCP"}; !slices.Equal(ports, want) {
		t.Errorf("headless ports %v, want %v", ports, want)
	}
	if !maps.Equal(headless.Spec.Selector, cc.SelectorLabels()) || !maps.Equal(svc.Spec.Selector, cc.SelectorLabels()) {
		t.Errorf("selectors %v %v", headless.Spec.Selector, svc.Spec.Selector)
	}

	// Client Service: ClusterIP, 80 → the pods' http port (8080).
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 ||
		svc.Spec.Ports[0].TargetPort != intstr.FromString("http") || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("client Service %+v", svc.Spec)
	}

	// PDB: maxUnavailable 1.
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil ||
		!maps.Equal(pdb.Spec.Selector.MatchLabels, cc.SelectorLabels()) {
		t.Errorf("PDB spec %+v", pdb.Spec)
	}

	// StatefulSet.
	if sts.Spec.ServiceName != cc.HeadlessServiceName() || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement ||
		ptr.Deref(sts.Spec.Replicas, 0) != 3 || !maps.Equal(sts.Spec.Selector.MatchLabels, cc.SelectorLabels()) {
		t.Errorf("StatefulSet spec: serviceName %q policy %q replicas %v selector %v",
			sts.Spec.ServiceName, sts.Spec.PodManagementPolicy, sts.Spec.Replicas, sts.Spec.Selector)
	}
	pod := sts.Spec.Template
	for _, arg := range []string{
		"--listen=0.0.0.0:8080",
		"--node-name=$(POD_NAME)",
		"--gossip-addr=0.0.0.0:7946",
		"--gossip-advertise-addr=$(POD_IP):7946",
		"--rpc-addr=0.0.0.0:7947",
		"--rpc-advertise-addr=$(POD_IP):7947",
		"--join=chat-headless." + ns + ".svc:7946",
		"--cluster-label=" + ns + "/chat",
		"--expected-nodes-file=/etc/chatd/cluster/expected-nodes",
		"--replication-factor=2",
		"--history-size=1000",
		"--send-queue=4096",
		"--drain-timeout=25s",
		"--shutdown-timeout=20s",
		"--allow-anonymous=true",
		"--peer-tls-cert-file=/etc/chatd/peer/$(POD_NAME).crt",
		"--peer-tls-key-file=/etc/chatd/peer/$(POD_NAME).key",
		"--peer-tls-ca-file=/etc/chatd/peer/ca.crt",
		"--gossip-keyring-file=/etc/chatd/gossip/keyring",
		"--admin-listen=0.0.0.0:9090",
		"--admin-token-file=/etc/chatd/admin/token",
	} {
		if err := hasArg(sts, arg); err != nil {
			t.Error(err)
		}
	}
	for _, a := range argsOf(sts) {
		if strings.HasPrefix(a, "--allowed-origins") || a == "--bootstrap" || strings.HasPrefix(a, "--jwt") {
			t.Errorf("unexpected argument %s", a)
		}
	}
	c := findContainer(pod.Spec.Containers, chatdconfig.ContainerName)
	if c.Image != chatv1alpha1.DefaultImage || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if f := env["POD_NAME"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME = %+v", env["POD_NAME"])
	}
	if f := env["POD_IP"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("POD_IP = %+v", env["POD_IP"])
	}
	if len(env) != 2 {
		t.Errorf("env %v, want POD_NAME and POD_IP alone (no secret in the environment)", env)
	}
	sc := c.SecurityContext
	if !ptr.Deref(sc.RunAsNonRoot, false) || ptr.Deref(sc.RunAsUser, 0) != 65532 || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
		ptr.Deref(sc.AllowPrivilegeEscalation, true) || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext %+v", sc)
	}
	if psc := pod.Spec.SecurityContext; psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || psc.SeccompProfile == nil {
		t.Errorf("pod securityContext %+v", psc)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port != intstr.FromString("http") {
		t.Errorf("readiness probe %+v", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.FailureThreshold*p.PeriodSeconds < 60 {
		t.Errorf("liveness probe %+v, want /healthz tolerating a minute of failures", p)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != chatv1alpha1.PreStopSleepSeconds {
		t.Errorf("lifecycle %+v, want a preStop sleep of %d s", c.Lifecycle, chatv1alpha1.PreStopSleepSeconds)
	}
	if g := ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, 0); g != cc.TerminationGracePeriodSeconds() || g <= chatv1alpha1.PreStopSleepSeconds+25+20+5 {
		t.Errorf("terminationGracePeriodSeconds %d, want %d (> preStop + drain + shutdown + leave)", g, cc.TerminationGracePeriodSeconds())
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Errorf("probe %+v, want plain HTTP without spec.tls", p)
		}
	}
	if pod.Spec.ServiceAccountName != sa.Name || ptr.Deref(pod.Spec.AutomountServiceAccountToken, true) {
		t.Errorf("pod service account %q automount %v", pod.Spec.ServiceAccountName, pod.Spec.AutomountServiceAccountToken)
	}
	hash := pod.Annotations[chatv1alpha1.AnnotationConfigHash]
	hashed := maps.Clone(cm.Data)
	delete(hashed, chatdconfig.ExpectedNodesKey) // read at run time, not hashed
	if hash == "" || hash != cm.Annotations[chatv1alpha1.AnnotationConfigHash] || hash != chatdconfig.HashData(hashed) {
		t.Errorf("pod config hash %q, ConfigMap's %q, hash of its data %q", hash, cm.Annotations[chatv1alpha1.AnnotationConfigHash], chatdconfig.HashData(hashed))
	}
	if got := cm.Data[chatdconfig.ExpectedNodesKey]; got != "3\n" {
		t.Errorf("ConfigMap %s = %q, want 3", chatdconfig.ExpectedNodesKey, got)
	}
	if v := findVolume(pod.Spec.Volumes, resources.ClusterVolumeName); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name ||
		len(v.ConfigMap.Items) != 1 || v.ConfigMap.Items[0].Key != chatdconfig.ExpectedNodesKey || v.ConfigMap.Items[0].Path != chatdconfig.ExpectedNodesFileName {
		t.Errorf("cluster size volume %+v", v)
	}
	if m := c.VolumeMounts; !slices.ContainsFunc(m, func(m corev1.VolumeMount) bool {
		return m.Name == resources.ClusterVolumeName && m.MountPath == chatdconfig.ClusterMountDir && m.SubPath == ""
	}) {
		t.Errorf("no cluster size mount at %s (without subPath, which the kubelet never updates): %+v", chatdconfig.ClusterMountDir, m)
	}
	if cm.Data[chatdconfig.ArgsKey] != strings.Join(c.Args, "\n")+"\n" {
		t.Errorf("ConfigMap args %q differ from the container's %q", cm.Data[chatdconfig.ArgsKey], c.Args)
	}
	if a := pod.Spec.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != resources.LabelHostname {
		t.Errorf("default affinity %+v", a)
	}
	if sp := pod.Spec.TopologySpreadConstraints; len(sp) != 1 || sp[0].TopologyKey != resources.LabelZone || sp[0].WhenUnsatisfiable != corev1.ScheduleAnyway {
		t.Errorf("default topology spread %+v", sp)
	}

	got := s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionTrue, chatv1alpha1.ReasonCreating)
	if got.Status.Selector != cc.SelectorString() || got.Status.ObservedGeneration != got.Generation {
		t.Errorf("status %+v", got.Status)
	}
	s.waitEvent(t, ns, cc.Name, eventCreated, "StatefulSet chat")
}

// TestReconcileIsIdempotent runs Reconcile again on a cluster the operator
// has built: nothing is written.
func TestReconcileIsIdempotent(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	cc.Spec.Auth.Issuer = "https://idp.example"
	cc.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}}
	s.create(t, cc)
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionTrue, chatv1alpha1.ReasonCreating)
	before := map[string]string{}
	for _, o := range children(cc) {
		if err := s.get(o); err != nil {
			t.Fatal(err)
		}
		before[fmt.Sprintf("%T/%s", o, o.GetName())] = o.GetResourceVersion()
	}
	rec := events.NewFakeRecorder(100)
	r := &ChatClusterReconciler{Client: s.admin, Scheme: s.scheme, Recorder: rec, OperatorNamespace: suiteOperatorNamespace}
	for range 2 {
		if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(cc)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range children(cc) {
		if err := s.get(o); err != nil {
			t.Fatal(err)
		}
		if k := fmt.Sprintf("%T/%s", o, o.GetName()); before[k] != o.GetResourceVersion() {
			t.Errorf("%s was written again (resourceVersion %s → %s)", k, before[k], o.GetResourceVersion())
		}
	}
	if len(rec.Events) > 0 {
		t.Errorf("events from a reconcile that changed nothing: %s", <-rec.Events)
	}
}

// TestSpecChangeRollsPodsKeepsGossipSecret edits historySize: a new
// configuration hash on the pod template (the pods roll), the same gossip
// keyring.
func TestSpecChangeRollsPodsKeepsGossipSecret(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	oldHash := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.GossipKeyringSecretName()}}
	eventually(t, "gossip Secret", func() error { return s.get(secret) })
	oldData, oldUID := maps.Clone(secret.Data), secret.UID

	s.update(t, cc, func() { cc.Spec.HistorySize = 5000 })
	sts = s.waitSts(t, cc, "new config hash", func(sts *appsv1.StatefulSet) error {
		if h := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]; h == oldHash {
			return fmt.Errorf("config hash still %s", h)
		}
		return nil
	})
	for _, a := range []string{"--history-size=5000", "--send-queue=5016"} {
		if err := hasArg(sts, a); err != nil {
			t.Error(err)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: resources.ConfigMapName(cc)}}
	if err := s.get(cm); err != nil {
		t.Fatal(err)
	}
	if cm.Annotations[chatv1alpha1.AnnotationConfigHash] != sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash] {
		t.Errorf("ConfigMap hash %s, pod template's %s", cm.Annotations[chatv1alpha1.AnnotationConfigHash], sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash])
	}
	if err := s.get(secret); err != nil {
		t.Fatal(err)
	}
	if secret.UID != oldUID || !maps.EqualFunc(secret.Data, oldData, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Errorf("the gossip Secret changed: uid %s → %s", oldUID, secret.UID)
	}
	s.waitEvent(t, ns, cc.Name, eventUpdated, "StatefulSet chat")
}

// TestScaleSubresource scales through /scale (kubectl scale, HPA): up at
// once, down one node at a time as the StatefulSet settles.
func TestScaleSubresource(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	s.waitSts(t, cc, "StatefulSet created", exists)
	s.setStsStatus(t, cc, 3)
	s.waitCondition(t, cc, chatv1alpha1.ConditionAvailable, metav1.ConditionTrue, chatv1alpha1.ReasonAllReplicasReady)

	scale := func(n int32) {
		t.Helper()
		sc := &autoscalingv1.Scale{}
		if err := s.admin.SubResource("scale").Get(context.Background(), cc, sc); err != nil {
			t.Fatal(err)
		}
		if sc.Status.Selector != cc.SelectorString() {
			t.Errorf("scale status selector %q, want %q", sc.Status.Selector, cc.SelectorString())
		}
		sc.Spec.Replicas = n
		if err := s.admin.SubResource("scale").Update(context.Background(), cc, client.WithSubResourceBody(sc)); err != nil {
			t.Fatal(err)
		}
	}
	replicasAndExpected := func(r, e int32) func(*appsv1.StatefulSet) error {
		return func(sts *appsv1.StatefulSet) error {
			if got := ptr.Deref(sts.Spec.Replicas, 0); got != r {
				return fmt.Errorf("replicas %d, want %d", got, r)
			}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: resources.ConfigMapName(cc)}}
			if err := s.get(cm); err != nil {
				return err
			}
			if got, want := cm.Data[chatdconfig.ExpectedNodesKey], fmt.Sprintf("%d\n", e); got != want {
				return fmt.Errorf("ConfigMap expected nodes %q, want %q", got, want)
			}
			if got := sts.Annotations[scaling.AnnotationExpectedNodes]; got != fmt.Sprint(e) {
				return fmt.Errorf("StatefulSet records expected nodes %q, want %d", got, e)
			}
			return nil
		}
	}
	before := s.waitSts(t, cc, "StatefulSet", exists).Spec.Template
	sameTemplate := func(step string) {
		t.Helper()
		sts := s.waitSts(t, cc, step, exists)
		if !equality.Semantic.DeepEqual(sts.Spec.Template, before) {
			t.Errorf("%s: the pod template changed, which rolls every pod", step)
		}
	}

	// Up to 5 (the size first, then the pods once every pod applies it:
	// TestScalingFollowsWhatThePodsApply; here no pod exists to wait for).
	scale(5)
	s.waitSts(t, cc, "scaled up to 5", replicasAndExpected(5, 5))
	sameTemplate("scaled up")

	// Down to 3: the StatefulSet controller has not caught up with 5 yet,
	// so nothing moves.
	scale(3)
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionTrue, chatv1alpha1.ReasonScalingDown)
	s.waitSts(t, cc, "still 5", replicasAndExpected(5, 5))
	s.setStsStatus(t, cc, 5)
	// One node leaves; the others keep an expected size of 5.
	s.waitSts(t, cc, "one step down", replicasAndExpected(4, 5))
	s.setStsStatus(t, cc, 4)
	// The last pod leaves while the others keep 5; 3 once it is gone.
	s.waitSts(t, cc, "at 3", replicasAndExpected(3, 5))
	s.setStsStatus(t, cc, 3)
	s.waitSts(t, cc, "size lowered", replicasAndExpected(3, 3))
	sameTemplate("scaled down")
	got := s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonUpToDate)
	if ptr.Deref(got.Spec.Replicas, 0) != 3 || got.Status.Replicas != 3 {
		t.Errorf("spec.replicas %v status.replicas %d", got.Spec.Replicas, got.Status.Replicas)
	}
}

// TestStatusFollowsTheStatefulSet plays the StatefulSet controller and
// checks the ChatCluster's status.
func TestStatusFollowsTheStatefulSet(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	s.setStsStatus(t, cc, 3)
	got := s.waitCondition(t, cc, chatv1alpha1.ConditionAvailable, metav1.ConditionTrue, chatv1alpha1.ReasonAllReplicasReady)
	st := got.Status
	if st.ObservedGeneration != got.Generation || st.Replicas != 3 || st.ReadyReplicas != 3 || st.Selector != cc.SelectorString() ||
		st.CurrentImage != chatv1alpha1.DefaultImage || st.ConfigHash != sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash] {
		t.Errorf("status %+v", st)
	}
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonUpToDate)
	s.waitCondition(t, cc, chatv1alpha1.ConditionDegraded, metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected)
	s.waitEvent(t, ns, cc.Name, eventAvailable, "3 of 3")

	s.setStsStatus(t, cc, 2)
	s.waitCondition(t, cc, chatv1alpha1.ConditionAvailable, metav1.ConditionTrue, chatv1alpha1.ReasonQuorumReady)
	s.waitCondition(t, cc, chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, chatv1alpha1.ReasonReplicasNotReady)
	s.setStsStatus(t, cc, 1)
	s.waitCondition(t, cc, chatv1alpha1.ConditionAvailable, metav1.ConditionFalse, chatv1alpha1.ReasonQuorumLost)
	s.waitEvent(t, ns, cc.Name, eventUnavailable, "1 of 3")
}

// TestInvalidSpecsAreRefused: the API server's CEL rules, with their messages.
func TestInvalidSpecsAreRefused(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(*chatv1alpha1.ChatCluster)
		want   string
	}{
		{"replicationFactor above replicas", func(c *chatv1alpha1.ChatCluster) { c.Spec.ReplicationFactor = 4 },
			"replicationFactor cannot exceed replicas"},
		{"both JWT refs", func(c *chatv1alpha1.ChatCluster) {
			c.Spec.Auth.JWTSecretRef = &chatv1alpha1.JWTSecretKeySelector{Name: "a"}
			c.Spec.Auth.JWTPublicKeySecretRef = &chatv1alpha1.JWTPublicKeySelector{Name: "b"}
		}, "set one of jwtSecretRef, jwtPublicKeySecretRef and jwksSecretRef, not several"},
		{"no way to authenticate", func(c *chatv1alpha1.ChatCluster) { c.Spec.Auth.AllowAnonymous = false },
			"no way to authenticate"},
		{"operator label in the pod template", func(c *chatv1alpha1.ChatCluster) {
			c.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{Labels: map[string]string{"chat.ringchat.io/x": "y"}}
		}, "podTemplate.labels cannot set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := sample(t, ns)
			cc.Name = "bad"
			tc.change(cc)
			err := s.admin.Create(ctx, cc)
			if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create: %v, want Invalid with %q", err, tc.want)
			}
		})
	}
	t.Run("clusterLabel change", func(t *testing.T) {
		cc := sample(t, ns)
		cc.Spec.Gossip.ClusterLabel = "blue"
		s.create(t, cc)
		cc.Spec.Gossip.ClusterLabel = "green"
		err := s.admin.Update(ctx, cc)
		if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "gossip.clusterLabel is immutable") {
			t.Errorf("update: %v, want Invalid with the immutability message", err)
		}
	})
}

// TestPauseAnnotation: a paused ChatCluster gets no objects and no changes,
// only Progressing=False/ReconciliationPaused and an event.
func TestPauseAnnotation(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	cc.Annotations = map[string]string{chatv1alpha1.AnnotationPauseReconcile: "true"}
	s.create(t, cc)
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonPaused)
	s.waitEvent(t, ns, cc.Name, eventPaused, "paused")
	// The reconcile that wrote the condition saw the annotation and built nothing.
	for _, o := range children(cc) {
		if err := s.get(o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s exists while paused (%v)", o, o.GetName(), err)
		}
	}

	s.update(t, cc, func() { delete(cc.Annotations, chatv1alpha1.AnnotationPauseReconcile) })
	sts := s.waitSts(t, cc, "StatefulSet after unpausing", exists)
	hash := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]

	s.update(t, cc, func() { cc.Annotations = map[string]string{chatv1alpha1.AnnotationPauseReconcile: "true"} })
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonPaused)
	s.update(t, cc, func() { cc.Spec.HistorySize = 3000 })
	// Paused at the new generation: that reconcile changed nothing.
	got := s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonPaused)
	if err := s.get(sts); err != nil {
		t.Fatal(err)
	}
	if h := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]; h != hash {
		t.Errorf("config hash changed while paused: %s → %s", hash, h)
	}
	if got.Status.ObservedGeneration == got.Generation {
		t.Errorf("status.observedGeneration %d is the paused generation", got.Status.ObservedGeneration)
	}

	s.update(t, cc, func() { cc.Annotations[chatv1alpha1.AnnotationPauseReconcile] = "false" })
	s.waitSts(t, cc, "the edit applied after unpausing", func(sts *appsv1.StatefulSet) error { return hasArg(sts, "--history-size=3000") })
}

// TestMissingJWTSecret: a referenced Secret that does not exist makes the
// cluster Degraded/SecretNotFound without a StatefulSet; creating it (seen
// through the Secret watch, sooner than the 30 s requeue) lets the operator
// go on, and a change of it rolls the pods.
func TestMissingJWTSecret(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	cc.Spec.Auth = chatv1alpha1.AuthSpec{JWTSecretRef: &chatv1alpha1.JWTSecretKeySelector{Name: "jwt"}}
	s.create(t, cc)
	got := s.waitCondition(t, cc, chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, chatv1alpha1.ReasonSecretNotFound)
	if c := meta.FindStatusCondition(got.Status.Conditions, chatv1alpha1.ConditionDegraded); !strings.Contains(c.Message, "Secret jwt") {
		t.Errorf("Degraded message %q", c.Message)
	}
	s.waitEvent(t, ns, cc.Name, eventSecretMissing, "Secret jwt (spec.auth.jwtSecretRef) not found")
	if err := s.get(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name}}); !apierrors.IsNotFound(err) {
		t.Errorf("StatefulSet without its Secret: %v", err)
	}
	eventually(t, "the client Service exists meanwhile", func() error {
		return s.get(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name}})
	})

	jwt := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "jwt"}, Data: map[string][]byte{"wrong-key": []byte("x")}}
	if err := s.admin.Create(context.Background(), jwt); err != nil {
		t.Fatal(err)
	}
	eventually(t, "missing key reported", func() error {
		got := cc.DeepCopy()
		if err := s.get(got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, chatv1alpha1.ConditionDegraded)
		if c == nil || !strings.Contains(c.Message, `has no key "jwt-secret"`) {
			return fmt.Errorf("Degraded %+v", c)
		}
		return nil
	})
	s.update(t, jwt, func() { jwt.Data = map[string][]byte{"jwt-secret": []byte(strings.Repeat("s", 32))} })
	sts := s.waitSts(t, cc, "StatefulSet once the Secret exists", func(sts *appsv1.StatefulSet) error {
		return hasArg(sts, "--jwt-secret-file=/etc/chatd/jwt/jwt-secret")
	})
	if err := hasArg(sts, "--allow-anonymous=false"); err != nil {
		t.Error(err)
	}
	vols := sts.Spec.Template.Spec.Volumes
	if v := findVolume(vols, resources.JWTVolumeName); len(vols) != 5 || v == nil || v.Secret == nil || v.Secret.SecretName != "jwt" || v.Secret.Items[0].Key != "jwt-secret" {
		t.Errorf("volumes %+v", vols)
	}
	s.waitCondition(t, cc, chatv1alpha1.ConditionProgressing, metav1.ConditionTrue, chatv1alpha1.ReasonCreating)
	eventually(t, "Degraded cleared", func() error {
		got := cc.DeepCopy()
		if err := s.get(got); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, chatv1alpha1.ConditionDegraded); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("Degraded %+v", c)
		}
		return nil
	})

	// Rotating the JWT secret rolls the pods (chatd reads it at start).
	hash := sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash]
	s.update(t, jwt, func() { jwt.Data["jwt-secret"] = []byte(strings.Repeat("t", 32)) })
	s.waitSts(t, cc, "new hash after the rotation", func(sts *appsv1.StatefulSet) error {
		if sts.Spec.Template.Annotations[chatv1alpha1.AnnotationConfigHash] == hash {
			return fmt.Errorf("hash unchanged")
		}
		return nil
	})
}

// TestOverrides: the spec's pod template additions, Service and budget
// reach the objects, and removing one removes it.
func TestOverrides(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	aff := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"chat"}}}}},
	}}}
	spread := []corev1.TopologySpreadConstraint{{MaxSkew: 2, TopologyKey: "rack", WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: cc.SelectorLabels()}}}
	cc.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{
		Labels:                    map[string]string{"team": "chat"},
		Annotations:               map[string]string{"prometheus.io/scrape": "true"},
		Affinity:                  aff,
		Tolerations:               []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "chat", Effect: corev1.TaintEffectNoSchedule}},
		NodeSelector:              map[string]string{"pool": "chat"},
		TopologySpreadConstraints: spread,
		PriorityClassName:         "high",
		ImagePullSecrets:          []corev1.LocalObjectReference{{Name: "regcred"}},
		Env:                       []corev1.EnvVar{{Name: "CHATD_LOG_LEVEL", Value: "debug"}, {Name: "POD_IP", Value: "1.2.3.4"}},
	}
	cc.Spec.Service = chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Port: 8000, NodePort: ptr.To[int32](30080),
		Annotations: map[string]string{"lb.example/kind": "nlb"}}
	cc.Spec.PodDisruptionBudget = &chatv1alpha1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromString("50%"))}
	cc.Spec.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}
	cc.Spec.TLS = &chatv1alpha1.TLSSpec{SecretName: "tls"}
	tls := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("c"), corev1.TLSPrivateKeyKey: []byte("k")}}
	if err := s.admin.Create(context.Background(), tls); err != nil {
		t.Fatal(err)
	}
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	p := sts.Spec.Template
	c := findContainer(p.Spec.Containers, chatdconfig.ContainerName)
	switch {
	case p.Labels["team"] != "chat" || p.Labels[chatv1alpha1.LabelCluster] != cc.Name:
		t.Errorf("labels %v", p.Labels)
	case p.Annotations["prometheus.io/scrape"] != "true" || p.Annotations[chatv1alpha1.AnnotationConfigHash] == "":
		t.Errorf("annotations %v", p.Annotations)
	case p.Spec.Affinity == nil || p.Spec.Affinity.NodeAffinity == nil || p.Spec.Affinity.PodAntiAffinity != nil:
		t.Errorf("affinity %+v, want the spec's instead of the default", p.Spec.Affinity)
	case len(p.Spec.Tolerations) != 1 || p.Spec.NodeSelector["pool"] != "chat" || p.Spec.PriorityClassName != "high":
		t.Errorf("tolerations %v nodeSelector %v priority %q", p.Spec.Tolerations, p.Spec.NodeSelector, p.Spec.PriorityClassName)
	case len(p.Spec.TopologySpreadConstraints) != 1 || p.Spec.TopologySpreadConstraints[0].TopologyKey != "rack":
		t.Errorf("spread %+v", p.Spec.TopologySpreadConstraints)
	case len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "regcred":
		t.Errorf("imagePullSecrets %v", p.Spec.ImagePullSecrets)
	case c.Resources.Requests.Memory().String() != "256Mi":
		t.Errorf("resources %+v", c.Resources)
	}
	var podIPs, logLevel int
	for _, e := range c.Env {
		switch {
		case e.Name == "POD_IP":
			podIPs++
			if e.ValueFrom == nil {
				t.Errorf("the spec replaced POD_IP: %+v", e)
			}
		case e.Name == "CHATD_LOG_LEVEL" && e.Value == "debug":
			logLevel++
		}
	}
	if podIPs != 1 || logLevel != 1 {
		t.Errorf("env %+v", c.Env)
	}
	if !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "tls" }) {
		t.Errorf("volumes %+v lack the TLS Secret", p.Spec.Volumes)
	}
	for _, arg := range []string{"--tls-cert-file=/etc/chatd/tls/tls.crt", "--tls-key-file=/etc/chatd/tls/tls.key"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %q lack %s", c.Args, arg)
		}
	}
	for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %+v, want HTTPS with spec.tls", pr)
		}
	}

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name}}
	eventually(t, "client Service", func() error { return s.get(svc) })
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].Port != 8000 || svc.Spec.Ports[0].NodePort != 30080 ||
		svc.Annotations["lb.example/kind"] != "nlb" {
		t.Errorf("client Service %+v %v", svc.Spec, svc.Annotations)
	}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name}}
	eventually(t, "PDB", func() error { return s.get(pdb) })
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromString("50%") || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB %+v", pdb.Spec)
	}

	// Remove the toleration and the Service annotation; switch back to
	// ClusterIP (the node port must go).
	s.update(t, cc, func() {
		cc.Spec.PodTemplate.Tolerations = nil
		cc.Spec.Service = chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Port: 80}
	})
	s.waitSts(t, cc, "toleration removed", func(sts *appsv1.StatefulSet) error {
		if n := len(sts.Spec.Template.Spec.Tolerations); n != 0 {
			return fmt.Errorf("%d tolerations", n)
		}
		return nil
	})
	eventually(t, "Service back to ClusterIP", func() error {
		if err := s.get(svc); err != nil {
			return err
		}
		if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Ports[0].NodePort != 0 || svc.Annotations["lb.example/kind"] != "" {
			return fmt.Errorf("Service %+v %v", svc.Spec, svc.Annotations)
		}
		return nil
	})
}

// TestForeignObjectIsNotAdopted: an object of the same name that the
// ChatCluster does not control is left alone and reported.
func TestForeignObjectIsNotAdopted(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	foreign := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name, Labels: map[string]string{"owner": "someone"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 1234}}},
	}
	if err := s.admin.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	s.create(t, cc)
	got := s.waitCondition(t, cc, chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, chatv1alpha1.ReasonReconcileFailed)
	if c := meta.FindStatusCondition(got.Status.Conditions, chatv1alpha1.ConditionDegraded); !strings.Contains(c.Message, "not controlled by this ChatCluster") {
		t.Errorf("message %q", c.Message)
	}
	if err := s.get(foreign); err != nil {
		t.Fatal(err)
	}
	if len(foreign.OwnerReferences) != 0 || foreign.Spec.Ports[0].Port != 1234 {
		t.Errorf("foreign Service was changed: %+v", foreign)
	}
	s.waitEvent(t, ns, cc.Name, eventFailed, "not controlled")
}

// TestDeletionLeavesChildrenToTheGarbageCollector: deleting a ChatCluster
// is not held up (no finalizer). envtest runs no garbage collector, so the
// objects stay; what makes a real cluster delete them is their controller
// owner reference to the deleted ChatCluster's UID, which is checked.
func TestDeletionLeavesChildrenToTheGarbageCollector(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cc := sample(t, ns)
	s.create(t, cc)
	for _, o := range children(cc) {
		eventually(t, fmt.Sprintf("%T %s", o, o.GetName()), func() error { return s.get(o) })
	}
	if len(cc.Finalizers) != 0 {
		t.Errorf("finalizers %v", cc.Finalizers)
	}
	if err := s.admin.Delete(context.Background(), cc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ChatCluster gone", func() error {
		err := s.get(&chatv1alpha1.ChatCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name}})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	for _, o := range children(cc) {
		if err := s.get(o); err != nil {
			t.Errorf("%T %s: %v", o, o.GetName(), err)
			continue
		}
		checkOwned(t, o, cc)
	}
}

// TestProvidedGossipKeyring: when the user gives the gossip keyring, no
// keyring Secret is generated and the pods mount the user's.
func TestProvidedGossipKeyring(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	user := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "my-gossip", Namespace: ns},
		Data: map[string][]byte{"ring": []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")}}
	if err := s.admin.Create(context.Background(), user); err != nil {
		t.Fatal(err)
	}
	cc := sample(t, ns)
	cc.Spec.Gossip.KeyringSecretRef = &chatv1alpha1.GossipKeyringSelector{Name: "my-gossip", Key: "ring"}
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	var vol *corev1.Volume
	for i, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == resources.GossipVolumeName {
			vol = &sts.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != "my-gossip" || len(vol.Secret.Items) != 1 ||
		vol.Secret.Items[0].Key != "ring" || vol.Secret.Items[0].Path != chatdconfig.GossipKeyringFileName {
		t.Errorf("gossip volume %+v, want my-gossip's key ring as the file keyring", vol)
	}
	generated := &corev1.Secret{}
	err := s.admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: cc.GossipKeyringSecretName()}, generated)
	if !apierrors.IsNotFound(err) {
		t.Errorf("generated gossip keyring exists (err %v) although the user provides one", err)
	}
}

// TestConfigMapApplier: the Helm chart's ChatCluster travels in a ConfigMap;
// the applier creates it, owned by the ConfigMap, and follows edits.
func TestConfigMapApplier(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cm := s.chartConfigMap(t, ns)
	a := &ConfigMapApplier{Client: s.admin, Reader: s.admin, Namespace: ns, Name: cm.Name}
	if err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	cc := &chatv1alpha1.ChatCluster{}
	if err := s.admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "from-chart"}, cc); err != nil {
		t.Fatal(err)
	}
	if cc.DesiredReplicas() != 3 || len(cc.OwnerReferences) != 1 || cc.OwnerReferences[0].UID != cm.UID {
		t.Fatalf("applied ChatCluster replicas %d owners %+v", cc.DesiredReplicas(), cc.OwnerReferences)
	}
	s.update(t, cm, func() { cm.Data[ManifestKey] = chartManifest(5, "ringchat/chatd:v1") })
	if err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "from-chart"}, cc); err != nil || cc.DesiredReplicas() != 5 {
		t.Fatalf("after the edit: replicas %d, err %v", cc.DesiredReplicas(), err)
	}
	s.update(t, cm, func() { cm.Data[ManifestKey] = "kind: ChatCluster\nspec:\n  replicas: many\n" })
	if err := a.Apply(context.Background()); err == nil {
		t.Fatal("a broken manifest was applied without an error")
	}
}

func findVolume(vs []corev1.Volume, name string) *corev1.Volume {
	for i := range vs {
		if vs[i].Name == name {
			return &vs[i]
		}
	}
	return nil
}
