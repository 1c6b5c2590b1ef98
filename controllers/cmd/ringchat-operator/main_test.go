package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/ringchat/ringchat/chatd/version"
	"github.com/ringchat/ringchat/controllers"
)

const repoRoot = "../../.."

func TestFlagDefaults(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags(nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	want := options{
		metricsAddr:       ":8080",
		probeAddr:         ":8081",
		logLevel:          "info",
		controllerWorkers: 2,
		sizePropagation:   controllers.DefaultSizePropagation,
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("defaults\n got %+v\nwant %+v", o, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestFlagValues(t *testing.T) {
	o, err := parseFlags([]string{
		"--metrics-bind-address=0", "--health-probe-bind-address", "127.0.0.1:9000",
		"--leader-elect", "--leader-election-namespace=ops", "--log-level=debug", "--workers=8",
		"--cluster-size-propagation=2m30s", "--cluster-from-configmap=ringchat-system/rel-ringchat-chatcluster",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.metricsAddr != "0" || o.probeAddr != "127.0.0.1:9000" || !o.leaderElect || o.leaderElectionNS != "ops" ||
		o.logLevel != "debug" || o.level.String() != "DEBUG" || o.controllerWorkers != 8 {
		t.Errorf("options %+v", o)
	}
	if o.sizePropagation != 150*time.Second {
		t.Errorf("--cluster-size-propagation=2m30s parsed as %s, want 2m30s", o.sizePropagation)
	}
	if o.clusterCMNS != "ringchat-system" || o.clusterCMName != "rel-ringchat-chatcluster" {
		t.Errorf("--cluster-from-configmap parsed as %q / %q", o.clusterCMNS, o.clusterCMName)
	}
}

// TestBadFlags: each bad command line exits 2 with a message naming the
// problem, before the operator looks for a cluster.
func TestBadFlags(t *testing.T) {
	// Should run() get past the flags, it would fail to find a cluster
	// (exit 1), not exit 2.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"stray"}, "unexpected arguments: [stray]"},
		{[]string{"--workers=many"}, `invalid value "many" for flag -workers`},
		{[]string{"--leader-elect=perhaps"}, `invalid boolean value "perhaps" for -leader-elect`},
		{[]string{"--cluster-size-propagation=soon"}, `invalid value "soon" for flag -cluster-size-propagation`},
		{[]string{"--cluster-size-propagation=90"}, `invalid value "90" for flag -cluster-size-propagation`},
		{[]string{"--cluster-size-propagation=-1s"}, "--cluster-size-propagation must not be negative, got -1s"},
		{[]string{"--log-level=loud"}, `--log-level must be debug, info, warn or error, got "loud"`},
		{[]string{"--cluster-from-configmap=just-a-name"}, `--cluster-from-configmap must be namespace/name, got "just-a-name"`},
		{[]string{"--cluster-from-configmap=/name"}, `--cluster-from-configmap must be namespace/name, got "/name"`},
		{[]string{"--cluster-from-configmap=ns/"}, `--cluster-from-configmap must be namespace/name, got "ns/"`},
		{[]string{"--cluster-from-configmap=a/b/c"}, `--cluster-from-configmap must be namespace/name, got "a/b/c"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, want nothing", tc.args, stdout.String())
		}
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	for _, flag := range []string{"-cluster-from-configmap", "-cluster-size-propagation", "-leader-elect", "-version"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("usage lacks %s:\n%s", flag, stderr.String())
		}
	}
}

func TestVersionFlag(t *testing.T) {
	old := version.Version
	version.Version = "v1.2.3-test"
	t.Cleanup(func() { version.Version = old })
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 || stdout.String() != "ringchat-operator v1.2.3-test\n" || stderr.Len() != 0 {
		t.Errorf("--version: exit %d, stdout %q, stderr %q; want exit 0 and \"ringchat-operator v1.2.3-test\"", code, stdout.String(), stderr.String())
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// stampVersion is the version the test binary is stamped with.
const stampVersion = "v0.0.0-stamp-test"

// operatorBinary builds the operator with the Makefile's build-operator
// target (the one hack/build-image.sh uses), stamped with stampVersion.
func operatorBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ringchat-operator-test")
		if err != nil {
			binErr = err
			return
		}
		cmd := exec.Command("make", "--no-print-directory", "-C", repoRoot, "build-operator", "BIN="+dir, "VERSION="+stampVersion)
		cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MAKELEVEL=")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("make build-operator: " + err.Error() + "\n" + string(out))
			return
		}
		binPath = filepath.Join(dir, "ringchat-operator")
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// TestStampedVersion: the binary `make build-operator` builds reports the
// VERSION it was given (the Makefile's LDFLAGS stamp chatd/version).
func TestStampedVersion(t *testing.T) {
	out, err := exec.Command(operatorBinary(t), "--version").CombinedOutput()
	if err != nil || string(out) != "ringchat-operator "+stampVersion+"\n" {
		t.Errorf("--version: %v, output %q; want \"ringchat-operator %s\"", err, out, stampVersion)
	}
}

// TestLeaderElectionWithShippedRBAC runs the operator binary against
// envtest as the ServiceAccount of config/rbac, with exactly the objects
// config/rbac/kustomization.yaml lists (the generated ClusterRole, the
// leader-election Role, their bindings): it must win the Lease, record the
// leader event, run its controller without a permission error, and on
// SIGTERM release the Lease and exit 0.
func TestLeaderElectionWithShippedRBAC(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run hack/envtest-assets.sh, e.g. " +
			"KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh | tail -1) go test ./controllers/..., or make test")
	}
	bin := operatorBinary(t)
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// config/rbac as kustomize lists it.
	rbacDir := filepath.Join(repoRoot, "config", "rbac")
	var kust struct {
		Resources []string `json:"resources"`
	}
	b, err := os.ReadFile(filepath.Join(rbacDir, "kustomization.yaml"))
	if err == nil {
		err = yaml.Unmarshal(b, &kust)
	}
	if err != nil {
		t.Fatal(err)
	}
	var sa *unstructured.Unstructured
	var objs []*unstructured.Unstructured
	for _, f := range kust.Resources {
		b, err := os.ReadFile(filepath.Join(rbacDir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(b), "\n---") {
			o := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &o.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(o.Object) == 0 {
				continue
			}
			if o.GetKind() == "ServiceAccount" {
				sa = o
			}
			objs = append(objs, o)
		}
	}
	if sa == nil {
		t.Fatal("config/rbac has no ServiceAccount")
	}
	ns := sa.GetNamespace()
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	// The ServiceAccount's identity, as the API server sees a pod's token.
	user, err := env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + sa.GetName(),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "--leader-elect", "--leader-election-namespace="+ns,
		"--metrics-bind-address=0", "--health-probe-bind-address=0")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBERNETES_SERVICE_HOST=")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: ns, Name: leaderElectionID}
	waitFor(t, exited, logs, "the operator to hold the Lease "+leaderElectionID, func() (bool, error) {
		err := admin.Get(ctx, key, lease)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return ptr.Deref(lease.Spec.HolderIdentity, "") != "", err
	})
	holder := *lease.Spec.HolderIdentity
	waitFor(t, exited, logs, "the LeaderElection event", func() (bool, error) {
		var events corev1.EventList
		if err := admin.List(ctx, &events, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Reason == "LeaderElection" && e.InvolvedObject.Kind == "Lease" && strings.Contains(e.Message, holder) {
				return true, nil
			}
		}
		return false, nil
	})
	// The leader starts the controller: its informers list and watch with
	// the ClusterRole. Wait for the controller's workers, then look for
	// permission errors.
	waitFor(t, exited, logs, "the controller's workers to start", func() (bool, error) {
		return strings.Contains(logs.String(), "Starting workers"), nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM\n%s", logs.String())
	}
	if err := admin.Get(ctx, key, lease); err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(lease.Spec.HolderIdentity, ""); h != "" {
		t.Errorf("the Lease is still held by %q after the operator stopped: not released\n%s", h, logs.String())
	}
	if s := logs.String(); strings.Contains(s, "forbidden") {
		t.Errorf("the operator hit a permission error:\n%s", forbiddenLines(s))
	}
}

// waitFor polls cond for up to 30 s, failing early when the operator exits.
func waitFor(t *testing.T, exited <-chan error, logs *syncBuffer, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("the operator exited (%v) while waiting for %s\n%s", err, what, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error %v)\n%s", what, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func forbiddenLines(s string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "forbidden") {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
