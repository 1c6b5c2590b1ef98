package controllers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// repoRoot is the repository, from this package's directory.
var repoRoot = func() string {
	p, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return p
}()

// controllerGen returns the pinned controller-gen, installing it if needed.
func controllerGen(t *testing.T) string { return installedTool(t, "controller-gen") }

// installedTool returns the path of a pinned tool of hack/tools.sh
// (controller-gen, helm), installing it if needed (the script prints the
// path last).
func installedTool(t *testing.T, name string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "tools.sh"), name)
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/tools.sh %s: %v\n%s", name, err, stderr.String())
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Fatalf("hack/tools.sh %s printed no path", name)
	}
	return lines[len(lines)-1]
}

// TestManifestsUpToDate regenerates the CRD and the ClusterRole into a
// temporary folder, with the arguments of `make manifests`, and compares them
// with config/.
func TestManifestsUpToDate(t *testing.T) {
	cg := controllerGen(t)
	tmp := t.TempDir()
	start := time.Now()
	cmd := exec.Command(cg, "rbac:roleName=ringchat-operator", "crd", "webhook",
		"paths=./api/...;./controllers/...",
		"output:crd:artifacts:config="+filepath.Join(tmp, "crd"),
		"output:rbac:artifacts:config="+filepath.Join(tmp, "rbac"),
		"output:webhook:artifacts:config="+filepath.Join(tmp, "webhook"))
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, out)
	}
	t.Logf("controller-gen took %s", time.Since(start).Round(time.Millisecond))
	compareDir(t, filepath.Join(tmp, "crd"), filepath.Join(repoRoot, "config", "crd", "bases"), "*.yaml", "make manifests")
	compareDir(t, filepath.Join(tmp, "rbac"), filepath.Join(repoRoot, "config", "rbac"), "role.yaml", "make manifests")
	if _, err := os.Stat(filepath.Join(tmp, "webhook")); err == nil {
		t.Errorf("controller-gen generated webhook manifests, which config/ does not have: run make manifests and add them")
	}
}

// TestDeepCopyUpToDate regenerates api/v1alpha1/zz_generated.deepcopy.go
// with the arguments of `make generate` (controller-gen object), into a
// temporary folder instead of the package, and compares it with the
// committed file: a type changed without `make generate` has stale DeepCopy
// methods, which copy too little and compile all the same.
func TestDeepCopyUpToDate(t *testing.T) {
	cg := controllerGen(t)
	tmp := t.TempDir()
	cmd := exec.Command(cg, "object", "paths=./api/...", "output:object:dir="+tmp)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen object: %v\n%s", err, out)
	}
	// ./api/... is one package, so the folder holds its one file.
	compareDir(t, tmp, filepath.Join(repoRoot, "api", "v1alpha1"), "zz_generated.*.go", "make generate")
}

// compareDir checks that every file of generated matching pattern is in
// committed with the same content, and that committed has no other file
// matching it; fix is the command that brings committed up to date.
func compareDir(t *testing.T, generated, committed, pattern, fix string) {
	t.Helper()
	gen, _ := filepath.Glob(filepath.Join(generated, pattern))
	com, _ := filepath.Glob(filepath.Join(committed, pattern))
	base := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if len(gen) == 0 {
		t.Fatalf("controller-gen generated nothing in %s", generated)
	}
	if g, c := base(gen), base(com); !slices.Equal(g, c) {
		t.Errorf("%s holds %v, controller-gen generates %v: run %s", committed, c, g, fix)
	}
	for _, g := range gen {
		want, _ := os.ReadFile(g)
		path := filepath.Join(committed, filepath.Base(g))
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v: run %s", err, fix)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date (%s): run %s", path, firstDiff(string(got), string(want)), fix)
		}
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, x, y)
		}
	}
	return "same lines"
}

// TestConfigDefaultApplies builds config/default with kubectl's kustomize
// and applies it to the envtest API server: the Namespace, CRD, RBAC and the
// operator's Deployment are accepted, and the Deployment's pods meet the
// restricted Pod Security Standard (the namespace enforces it; the API server
// warns about a workload whose pods would not).
func TestConfigDefaultApplies(t *testing.T) {
	s := envSuite(t)
	kustomize := exec.Command(s.kubectl, "kustomize", filepath.Join(repoRoot, "config", "default"))
	manifests, err := kustomize.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v", err)
	}
	apply := exec.Command(s.kubectl, "--kubeconfig", s.adminKube, "apply", "-f", "-")
	apply.Stdin = bytes.NewReader(manifests)
	var stdout, stderr bytes.Buffer
	apply.Stdout, apply.Stderr = &stdout, &stderr
	if err := apply.Run(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	t.Logf("kubectl apply:\n%s", stdout.String())
	if strings.Contains(stderr.String(), "PodSecurity") {
		t.Errorf("the operator's Deployment does not meet the restricted Pod Security Standard:\n%s", stderr.String())
	}
	for _, want := range []string{
		"namespace/ringchat-system", "customresourcedefinition.apiextensions.k8s.io/chatclusters.chat.ringchat.io",
		"serviceaccount/ringchat-operator", "clusterrole.rbac.authorization.k8s.io/ringchat-operator",
		"clusterrolebinding.rbac.authorization.k8s.io/ringchat-operator", "role.rbac.authorization.k8s.io/ringchat-operator-leader-election",
		"rolebinding.rbac.authorization.k8s.io/ringchat-operator-leader-election", "deployment.apps/ringchat-operator",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("kubectl apply did not report %s", want)
		}
	}
}

// TestChatdPodsMeetRestrictedPodSecurity creates a pod from the operator's
// pod template in a namespace that enforces the restricted Pod Security
// Standard: the API server refuses any pod that does not meet it.
func TestChatdPodsMeetRestrictedPodSecurity(t *testing.T) {
	s := envSuite(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "restricted-" + utilrand.String(6),
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}
	if err := s.admin.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// The namespace does enforce: a pod without any hardening is refused.
	bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "bare"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if err := s.admin.Create(ctx, bare); !apierrors.IsForbidden(err) {
		t.Fatalf("a bare pod in a restricted namespace: %v, want Forbidden (is the PodSecurity admission plugin on?)", err)
	}
	cc := sample(t, ns.Name)
	s.create(t, cc)
	sts := s.waitSts(t, cc, "StatefulSet created", exists)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: cc.Name + "-0", Labels: sts.Spec.Template.Labels},
		Spec:       sts.Spec.Template.Spec,
	}
	if err := s.admin.Create(ctx, pod); err != nil {
		if apierrors.IsForbidden(err) {
			t.Fatalf("the chatd pod template violates the restricted Pod Security Standard: %v", err)
		}
		t.Fatal(err)
	}
	_ = s.admin.Delete(ctx, pod, client.GracePeriodSeconds(0))
}
