package controllers

// The envtest suite: a real kube-apiserver and etcd (built from source by
// hack/envtest-assets.sh), the CRD from config/crd/bases, and the operator's
// manager running as a user that has exactly the generated ClusterRole
// (config/rbac/role.yaml), with the OwnerReferencesPermissionEnforcement
// admission plugin on, as on a production API server: a missing RBAC rule
// fails the tests.
//
// envtest runs no controller-manager: no StatefulSet controller (tests write
// StatefulSet status themselves), no garbage collector, no pods.
//
// The environment starts lazily, at the first test that needs it, so the
// pure-function tests of this package run without the assets.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"
)

const (
	// operatorUser is the identity the manager runs as in the suite.
	operatorUser = "ringchat-operator-test"
	// suiteOperatorNamespace is the namespace the suite's operator says it
	// runs in (its NetworkPolicies let it reach the admin port).
	suiteOperatorNamespace = "ringchat-system"
	// waitTimeout bounds every wait for the operator; generous for a
	// loaded 2-core machine with the race detector.
	waitTimeout  = 30 * time.Second
	pollInterval = 50 * time.Millisecond
)

type suite struct {
	env       *envtest.Environment
	admin     client.Client // cluster admin, for the tests' own reads and writes
	adminCfg  *rest.Config
	scheme    *runtime.Scheme
	kubectl   string // path of the assets' kubectl
	adminKube string // admin kubeconfig file
	stop      context.CancelFunc
	done      chan error
	// stale provokes conflicts on the operator's writes (staleWrites).
	stale *staleWrites
}

var (
	suiteOnce sync.Once
	theSuite  *suite
	suiteErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theSuite != nil {
		theSuite.stop()
		if err := <-theSuite.done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
		if err := theSuite.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

// envSuite returns the running envtest suite, starting it the first time.
// Without KUBEBUILDER_ASSETS the test fails: these tests are part of
// `make test`, never skipped.
func envSuite(t *testing.T) *suite {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run hack/envtest-assets.sh, e.g. " +
			"KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh | tail -1) go test ./controllers/..., or make test")
	}
	suiteOnce.Do(func() {
		start := time.Now()
		theSuite, suiteErr = startSuite()
		if suiteErr == nil {
			t.Logf("envtest and the manager started in %s", time.Since(start).Round(time.Millisecond))
		}
	})
	if suiteErr != nil {
		t.Fatalf("starting envtest: %v", suiteErr)
	}
	return theSuite
}

func startSuite() (*suite, error) {
	logger := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctrl.SetLogger(logger)

	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), chatv1alpha1.AddToScheme(scheme)); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	// As on a production API server: setting an owner reference with
	// blockOwnerDeletion needs update on the owner's finalizers.
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	adminCfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	s := &suite{env: env, adminCfg: adminCfg, scheme: scheme}
	ok := false
	defer func() {
		if !ok {
			_ = env.Stop()
		}
	}()
	if s.admin, err = client.New(adminCfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	s.kubectl = filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	adminUser, err := env.AddUser(envtest.User{Name: "suite-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := adminUser.KubeConfig()
	if err != nil {
		return nil, err
	}
	s.adminKube = filepath.Join(env.ControlPlane.APIServer.CertDir, "admin.kubeconfig")
	if err := os.WriteFile(s.adminKube, kc, 0o600); err != nil {
		return nil, err
	}

	// The operator's identity: the generated ClusterRole, nothing else.
	ctx := context.Background()
	role, err := loadGeneratedRole()
	if err != nil {
		return nil, err
	}
	if err := s.admin.Create(ctx, role); err != nil {
		return nil, fmt.Errorf("creating the ClusterRole: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ringchat-operator-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: operatorUser}},
	}
	if err := s.admin.Create(ctx, binding); err != nil {
		return nil, fmt.Errorf("creating the ClusterRoleBinding: %w", err)
	}
	opUser, err := env.AddUser(envtest.User{Name: operatorUser}, nil)
	if err != nil {
		return nil, err
	}

	mgr, err := ctrl.NewManager(opUser.Config(), ctrl.Options{
		Scheme:                 scheme,
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	// The operator's client meets stale reads where a test asks for them
	// (see staleWrites). SizePropagation is long: a scaling step here moves
	// on because the pods report the new cluster size (or because no pod
	// exists), never because time passed. The pods are asked often, and
	// asked again soon, so that the scaling tests are quick.
	s.stale = &staleWrites{Client: mgr.GetClient(), admin: s.admin, armed: map[string]int{}, conflicts: map[string]int{}}
	r := &ChatClusterReconciler{
		Client: s.stale, Scheme: mgr.GetScheme(), Recorder: mgr.GetEventRecorder(operatorController),
		SizePropagation: time.Hour, SizePoll: 200 * time.Millisecond, SizeResync: 2 * time.Second,
		OperatorNamespace: suiteOperatorNamespace,
	}
	if err := r.SetupWithManager(mgr, 4); err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.done = make(chan error, 1)
	go func() { s.done <- mgr.Start(mctx) }()
	ok = true
	return s, nil
}

// loadGeneratedRole reads config/rbac/role.yaml, the ClusterRole that
// controller-gen generates from the +kubebuilder:rbac markers.
func loadGeneratedRole() (*rbacv1.ClusterRole, error) {
	b, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(b, role); err != nil {
		return nil, fmt.Errorf("config/rbac/role.yaml: %w", err)
	}
	return role, nil
}

// namespace creates a fresh namespace for one test.
func (s *suite) namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t-" + utilrand.String(8)}}
	if err := s.admin.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// sample reads config/samples/chat_v1alpha1_chatcluster.yaml into namespace ns.
func sample(t *testing.T, ns string) *chatv1alpha1.ChatCluster {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "config", "samples", "chat_v1alpha1_chatcluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cc := &chatv1alpha1.ChatCluster{}
	if err := yaml.UnmarshalStrict(b, cc); err != nil {
		t.Fatalf("sample: %v", err)
	}
	cc.Namespace = ns
	return cc
}

// eventually calls f until it returns nil, failing the test with f's last
// error after waitTimeout.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(waitTimeout)
	for {
		err := f()
		if err == nil {
			if d := time.Since(start); d > time.Second {
				t.Logf("waited %s for %s", d.Round(time.Millisecond), what)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, waitTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// operatorController is the operator's events' reportingController in the
// suite (the name cmd/ringchat-operator gives its recorder too).
const operatorController = "ringchat-operator"

// get reads obj (by its namespace and name) with the admin client.
func (s *suite) get(obj client.Object) error {
	return s.admin.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
}

// update reads obj, applies change and writes it back, retrying on
// conflicts with the operator.
func (s *suite) update(t *testing.T, obj client.Object, change func()) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := s.get(obj); err != nil {
			return err
		}
		change()
		return s.admin.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatalf("updating %s: %v", obj.GetName(), err)
	}
}

// events lists the events.k8s.io Events about the object named name in ns.
func (s *suite) events(ns, name string) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := s.admin.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out, nil
}

// waitEvent waits for an event of the given reason about name whose note
// contains substr.
func (s *suite) waitEvent(t *testing.T, ns, name, reason, substr string) {
	t.Helper()
	eventually(t, "event "+reason, func() error {
		evs, err := s.events(ns, name)
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs {
			if e.Reason == reason && strings.Contains(e.Note, substr) {
				return nil
			}
			seen = append(seen, e.Reason+": "+e.Note)
		}
		return fmt.Errorf("no %s event with %q among %q", reason, substr, seen)
	})
}

// testCluster is a ChatCluster "prod" in namespace "chat", for the tests
// that need no API server.
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
