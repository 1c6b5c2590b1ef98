package controllers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// operatorClient is a client with the operator's identity: the generated
// ClusterRole and nothing else, as the applier runs in the manager.
func (s *suite) operatorClient(t *testing.T) client.Client {
	t.Helper()
	u, err := s.env.AddUser(envtest.User{Name: operatorUser}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(u.Config(), client.Options{Scheme: s.scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countingClient counts the applier's writes.
type countingClient struct {
	client.Client
	patches atomic.Int32
}

func (c *countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.patches.Add(1)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

// hookedReader counts the ConfigMap reads and calls afterCCGet (once, then
// clears it) after a read of a ChatCluster.
type hookedReader struct {
	client.Reader
	cmReads    atomic.Int32
	mu         sync.Mutex
	afterCCGet func()
}

func (r *hookedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.Reader.Get(ctx, key, obj, opts...)
	switch obj.(type) {
	case *corev1.ConfigMap:
		r.cmReads.Add(1)
	case *chatv1alpha1.ChatCluster:
		r.mu.Lock()
		f := r.afterCCGet
		r.afterCCGet = nil
		r.mu.Unlock()
		if f != nil {
			f()
		}
	}
	return err
}

// scaleTo sets cc's replicas through the scale subresource, as kubectl
// scale and a HorizontalPodAutoscaler do.
func (s *suite) scaleTo(t *testing.T, cc *chatv1alpha1.ChatCluster, n int32) {
	t.Helper()
	sc := &autoscalingv1.Scale{}
	if err := s.admin.SubResource("scale").Get(context.Background(), cc, sc); err != nil {
		t.Fatal(err)
	}
	sc.Spec.Replicas = n
	if err := s.admin.SubResource("scale").Update(context.Background(), cc, client.WithSubResourceBody(sc)); err != nil {
		t.Fatal(err)
	}
}

func chartManifest(replicas int, image string) string {
	return fmt.Sprintf(`apiVersion: chat.ringchat.io/v1alpha1
kind: ChatCluster
metadata:
  name: from-chart
spec:
  replicas: %d
  image: %s
  auth:
    allowAnonymous: true
`, replicas, image)
}

// chartConfigMapName is the ConfigMap chartConfigMap creates.
const chartConfigMapName = "rel-chatcluster"

// chartConfigMap creates in ns the ConfigMap of a chart release with
// cluster.enabled: the manifest of a ChatCluster "from-chart" of 3 nodes of
// ringchat/chatd:v1.
func (s *suite) chartConfigMap(t *testing.T, ns string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: chartConfigMapName, Namespace: ns},
		Data: map[string]string{ManifestKey: chartManifest(3, "ringchat/chatd:v1")}}
	if err := s.admin.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	return cm
}

// runApplier runs a as a controller in a manager of its own, as the
// operator's identity (the generated ClusterRole), until the test ends.
func (s *suite) runApplier(t *testing.T, a *ConfigMapApplier) {
	t.Helper()
	u, err := s.env.AddUser(envtest.User{Name: operatorUser}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(u.Config(), ctrl.Options{
		Scheme:                 s.scheme,
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the applier's manager: %v", err)
		}
	})
}

// TestConfigMapApplierKeepsScale: the chart's ChatCluster, applied from its
// ConfigMap by the applier running as a controller (as the operator's
// identity), keeps a count set through the scale subresource across events
// and across manifest changes that leave replicas alone; a manifest that
// changes replicas sets them; a ChatCluster deleted by hand is created
// again. Nothing polls: each apply follows a watch event.
func TestConfigMapApplierKeepsScale(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	cm := s.chartConfigMap(t, ns)
	op := s.operatorClient(t)
	writes := &countingClient{Client: op}
	reads := &hookedReader{Reader: op}
	s.runApplier(t, &ConfigMapApplier{Client: writes, Reader: reads, Namespace: ns, Name: cm.Name})
	// touch changes the ConfigMap without changing its manifest (a label)
	// and waits for the applier to handle the event (read the ConfigMap).
	touch := func() {
		t.Helper()
		n := reads.cmReads.Load() + 1
		s.update(t, cm, func() {
			if cm.Labels == nil {
				cm.Labels = map[string]string{}
			}
			cm.Labels["touched"] = strconv.Itoa(int(n))
		})
		eventually(t, "the applier handles the ConfigMap's update", func() error {
			if got := reads.cmReads.Load(); got < n {
				return fmt.Errorf("%d reads, want %d", got, n)
			}
			return nil
		})
	}
	// unchangedEvent makes the applier handle an event of an unchanged
	// manifest, and fails if it wrote. The applier handles one event at a
	// time, so once it reads the ConfigMap for a second event, it is done
	// with the first one and its writes are counted.
	unchangedEvent := func() {
		t.Helper()
		w := writes.patches.Load()
		touch()
		touch()
		if got := writes.patches.Load(); got != w {
			t.Errorf("%d applies of an unchanged manifest, want none", got-w)
		}
	}

	cc := &chatv1alpha1.ChatCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-chart"}}
	wantSpec := func(what string, replicas int32, image string) {
		t.Helper()
		eventually(t, what, func() error {
			if err := s.get(cc); err != nil {
				return err
			}
			if got := ptr.Deref(cc.Spec.Replicas, -1); got != replicas || cc.Spec.Image != image {
				return fmt.Errorf("replicas %d image %s, want %d and %s", got, cc.Spec.Image, replicas, image)
			}
			return nil
		})
	}
	wantSpec("created from the ConfigMap", 3, "ringchat/chatd:v1")
	if ref := cc.OwnerReferences; len(ref) != 1 || ref[0].UID != cm.UID || ref[0].Kind != "ConfigMap" {
		t.Errorf("owner references %+v, want the ConfigMap %s", ref, cm.UID)
	}
	if got := cc.Annotations[AnnotationAppliedReplicas]; got != "3" {
		t.Errorf("%s %q, want 3", AnnotationAppliedReplicas, got)
	}

	// Unchanged manifest: no write at all.
	unchangedEvent()

	// kubectl scale: kept while the manifest stays.
	s.scaleTo(t, cc, 5)
	unchangedEvent()
	wantSpec("kubectl scale kept", 5, "ringchat/chatd:v1")

	// helm upgrade changing the image only: the image is applied, the scale
	// kept.
	s.update(t, cm, func() { cm.Data[ManifestKey] = chartManifest(3, "ringchat/chatd:v2") })
	wantSpec("new image, count kept", 5, "ringchat/chatd:v2")
	unchangedEvent()
	wantSpec("still", 5, "ringchat/chatd:v2")

	// A hand edit of a field the manifest sets stays too, until the
	// manifest changes.
	s.update(t, cc, func() { cc.Spec.Image = "ringchat/chatd:hotfix" })
	unchangedEvent()
	wantSpec("hand edit kept", 5, "ringchat/chatd:hotfix")

	// helm upgrade changing cluster.replicas: the values win, the whole
	// manifest with them.
	s.update(t, cm, func() { cm.Data[ManifestKey] = chartManifest(4, "ringchat/chatd:v2") })
	wantSpec("replicas and image from the values", 4, "ringchat/chatd:v2")
	if got := cc.Annotations[AnnotationAppliedReplicas]; got != "4" {
		t.Errorf("%s %q, want 4", AnnotationAppliedReplicas, got)
	}
	s.scaleTo(t, cc, 2)
	unchangedEvent()
	wantSpec("scaled down by hand, kept", 2, "ringchat/chatd:v2")

	// Deleted by hand: created again from the manifest, through the watch
	// on the ChatClusters the ConfigMap owns.
	uid := cc.UID
	if err := s.admin.Delete(context.Background(), cc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ChatCluster created again", func() error {
		got := &chatv1alpha1.ChatCluster{}
		if err := s.admin.Get(context.Background(), client.ObjectKeyFromObject(cc), got); err != nil {
			return err
		}
		if got.UID == uid {
			return fmt.Errorf("still the deleted one")
		}
		return nil
	})
	wantSpec("created again from the manifest", 4, "ringchat/chatd:v2")
}

// TestConfigMapApplierScaleDuringApply: an autoscaler that scales between
// the applier's read of the ChatCluster and its apply is not undone (the
// apply is conditional on the resourceVersion read, and read again on
// conflict).
func TestConfigMapApplierScaleDuringApply(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	ctx := context.Background()
	cm := s.chartConfigMap(t, ns)
	writes := &countingClient{Client: s.admin}
	reads := &hookedReader{Reader: s.admin}
	a := &ConfigMapApplier{Client: writes, Reader: reads, Namespace: ns, Name: cm.Name}
	if err := a.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	cc := &chatv1alpha1.ChatCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-chart"}}
	if err := s.get(cc); err != nil {
		t.Fatal(err)
	}
	s.scaleTo(t, cc, 5)

	s.update(t, cm, func() { cm.Data[ManifestKey] = chartManifest(3, "ringchat/chatd:v2") })
	reads.mu.Lock()
	reads.afterCCGet = func() { s.scaleTo(t, cc, 7) }
	reads.mu.Unlock()
	if err := a.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.get(cc); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(cc.Spec.Replicas, -1); got != 7 || cc.Spec.Image != "ringchat/chatd:v2" {
		t.Errorf("replicas %d image %s, want 7 (scaled during the apply) and the new image", got, cc.Spec.Image)
	}
	// create, the apply refused for the stale count, the apply again (and
	// more if the operator's status writes got in between)
	if n := writes.patches.Load(); n < 3 {
		t.Errorf("%d applies, want at least 3: the first apply of the new manifest should have been refused", n)
	}
}

// TestConfigMapApplierNewConfigMap: a ConfigMap deleted and created again
// with the same manifest (helm uninstall and install while the old
// ChatCluster still exists) is applied again, so that it owns the
// ChatCluster.
func TestConfigMapApplierNewConfigMap(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	ctx := context.Background()
	a := &ConfigMapApplier{Client: s.admin, Reader: s.admin, Namespace: ns, Name: chartConfigMapName}
	old := s.chartConfigMap(t, ns)
	if err := a.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.admin.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	cm := s.chartConfigMap(t, ns)
	if err := a.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	cc := &chatv1alpha1.ChatCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-chart"}}
	if err := s.get(cc); err != nil {
		t.Fatal(err)
	}
	if ref := cc.OwnerReferences; len(ref) != 1 || ref[0].UID != cm.UID {
		t.Errorf("owner references %+v, want only the new ConfigMap %s", ref, cm.UID)
	}
}

// TestChartInstallCreatesCluster: `helm install` of charts/ringchat with
// cluster.enabled=true against the envtest API server succeeds (every
// object of the release accepted), and the ConfigMap the chart's operator
// Deployment is pointed at (--cluster-from-configmap) becomes a ChatCluster
// the operator builds. The applier runs as the chart's ServiceAccount, so
// the chart's RBAC is what allows it. The CRD is the suite's
// (crds.install=false): envtest has it already.
func TestChartInstallCreatesCluster(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	ctx := context.Background()
	helmBin := installedTool(t, "helm")
	home := t.TempDir()
	install := exec.Command(helmBin, "install", "chart", filepath.Join(repoRoot, "charts", "ringchat"),
		"--kubeconfig", s.adminKube, "--namespace", ns, "--set", "crds.install=false", "--set", "cluster.enabled=true")
	install.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}

	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chart-ringchat-operator"}}
	if err := s.get(d); err != nil {
		t.Fatal(err)
	}
	var from string
	for _, arg := range d.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(arg, "--cluster-from-configmap="); ok {
			from = v
		}
	}
	cmNS, cmName, ok := strings.Cut(from, "/")
	if !ok || cmNS != ns {
		t.Fatalf("operator args %q: want --cluster-from-configmap=%s/<name>", d.Spec.Template.Spec.Containers[0].Args, ns)
	}

	cfg := rest.CopyConfig(s.adminCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + d.Spec.Template.Spec.ServiceAccountName}
	sa, err := client.New(cfg, client.Options{Scheme: s.scheme})
	if err != nil {
		t.Fatal(err)
	}
	a := &ConfigMapApplier{Client: sa, Reader: sa, Namespace: cmNS, Name: cmName}
	if err := a.Apply(ctx); err != nil {
		t.Fatalf("applying the chart's ConfigMap as the chart's ServiceAccount: %v", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cmNS, Name: cmName}}
	cc := &chatv1alpha1.ChatCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chart"}}
	if err := errors.Join(s.get(cm), s.get(cc)); err != nil {
		t.Fatal(err)
	}
	if ref := cc.OwnerReferences; len(ref) != 1 || ref[0].UID != cm.UID {
		t.Errorf("ChatCluster owners %+v, want the ConfigMap %s", ref, cm.UID)
	}
	if cc.DesiredReplicas() != 3 || cc.Spec.Image != "ringchat/chatd:dev" || !cc.Spec.Auth.AllowAnonymous {
		t.Errorf("ChatCluster spec %+v, want the chart's defaults", cc.Spec)
	}
	s.waitSts(t, cc, "StatefulSet of the chart's ChatCluster", exists)
	for _, obj := range children(cc) {
		if err := s.get(obj); err != nil {
			t.Errorf("%T %s: %v", obj, obj.GetName(), err)
		}
	}
}
