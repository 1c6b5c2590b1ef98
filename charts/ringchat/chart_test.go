package charts_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "."
	repoRoot  = "../.."
	crdFile   = "files/chatclusters.yaml"
	crdSource = "../../config/crd/bases/chat.ringchat.io_chatclusters.yaml"
	roleFile  = "files/role.yaml"
	roleSrc   = "../../config/rbac/role.yaml"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  string
)

// helm installs the pinned helm with hack/tools.sh (cached after the first
// time) and returns its path. It fails, never skips, when that is impossible.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		cmd := exec.Command("hack/tools.sh", "helm")
		cmd.Dir = repoRoot
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			helmErr = "hack/tools.sh helm: " + err.Error() + "\n" + stderr.String()
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		p := strings.TrimSpace(lines[len(lines)-1])
		if _, err := os.Stat(p); err != nil {
			helmErr = "hack/tools.sh helm printed " + p + ": " + err.Error()
			return
		}
		helmPath = p
	})
	if helmPath == "" {
		t.Fatalf("cannot install helm: %s", helmErr)
	}
	return helmPath
}

// runHelm runs helm with args and returns stdout and the combined error text.
func runHelm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

type obj = map[string]any

// render runs helm template with the extra args and returns the objects.
func render(t *testing.T, args ...string) []obj {
	t.Helper()
	out, stderr, err := runHelm(t, append([]string{"template", "rel", chartDir, "--namespace", "chat-system"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr)
	}
	var objs []obj
	for _, doc := range strings.Split(out, "\n---") {
		var o obj
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(o) > 0 {
			objs = append(objs, o)
			// The optional ChatCluster travels inside a ConfigMap (see
			// templates/chatcluster.yaml); parse it too, so tests can find it.
			if m, ok := get(o, "data", "chatcluster.yaml").(string); ok && get(o, "kind") == "ConfigMap" {
				var cc obj
				if err := yaml.Unmarshal([]byte(m), &cc); err != nil {
					t.Fatalf("embedded ChatCluster does not parse: %v\n%s", err, m)
				}
				objs = append(objs, cc)
			}
		}
	}
	return objs
}

// get walks a path of map keys and slice indexes.
func get(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := o.(obj)
			if !ok {
				return nil
			}
			o = m[k]
		case int:
			s, ok := o.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			o = s[k]
		}
	}
	return o
}

func find(t *testing.T, objs []obj, kind, name string) obj {
	t.Helper()
	for _, o := range objs {
		if get(o, "kind") == kind && get(o, "metadata", "name") == name {
			return o
		}
	}
	t.Fatalf("no %s %q among %v", kind, name, kinds(objs))
	return nil
}

func kinds(objs []obj) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, get(o, "kind").(string)+"/"+get(o, "metadata", "name").(string))
	}
	slices.Sort(ks)
	return ks
}

func readYAML(t *testing.T, path string) obj {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var o obj
	if err := yaml.Unmarshal(b, &o); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return o
}

// allOptions sets every documented option away from its default.
var allOptions = []string{
	"--set", "nameOverride=rc",
	"--set", "replicaCount=3",
	"--set", "image.tag=v9.9.9",
	"--set", "image.pullPolicy=Always",
	"--set", "imagePullSecrets[0].name=regcred",
	"--set", "operator.logLevel=debug",
	"--set", "operator.workers=4",
	"--set", "operator.probePort=9091",
	"--set", "serviceAccount.name=custom-sa",
	"--set", "serviceAccount.annotations.a=b",
	"--set", "podAnnotations.p=q",
	"--set", "podLabels.team=chat",
	"--set", "nodeSelector.disk=ssd",
	"--set", "priorityClassName=high",
	"--set", "resources.limits.cpu=500m",
	"--set", "metrics.port=9090",
	"--set", "metrics.serviceMonitor.enabled=true",
	"--set", "metrics.serviceMonitor.interval=15s",
	"--set", "metrics.serviceMonitor.labels.release=prom",
	"--set", "networkPolicy.enabled=true",
	"--set", "networkPolicy.metricsNamespaceLabels.name=monitoring",
	"--set", "crds.install=false",
	"--set", "cluster.enabled=true",
	"--set", "cluster.name=lobby",
	"--set", "cluster.replicas=5",
	"--set", "cluster.image=example.com/chatd:1.2.3",
	"--set", "cluster.service.type=NodePort",
	"--set", "cluster.service.port=8088",
	"--set", "cluster.historySize=5000",
	"--set", "cluster.replicationFactor=3",
	"--set", "tests.image.tag=t1",
	"--set", "tests.image.pullPolicy=Never",
}

func TestLintStrict(t *testing.T) {
	for name, args := range map[string][]string{"defaults": nil, "all options": allOptions} {
		out, stderr, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil {
			t.Errorf("helm lint --strict (%s): %v\n%s%s", name, err, out, stderr)
		}
	}
}

func TestRenderDefaults(t *testing.T) {
	objs := render(t)
	want := []string{
		"ClusterRole/rel-ringchat-operator",
		"ClusterRoleBinding/rel-ringchat-operator",
		"CustomResourceDefinition/chatclusters.chat.ringchat.io",
		"Deployment/rel-ringchat-operator",
		"Role/rel-ringchat-operator-leader-election",
		"RoleBinding/rel-ringchat-operator-leader-election",
		"Service/rel-ringchat-operator-metrics",
		"ServiceAccount/rel-ringchat-operator",
	}
	if got := kinds(objs); !reflect.DeepEqual(got, want) {
		t.Fatalf("rendered objects\n got %v\nwant %v", got, want)
	}

	d := find(t, objs, "Deployment", "rel-ringchat-operator")
	if r := get(d, "spec", "replicas"); r != float64(2) {
		t.Errorf("replicas %v, want 2", r)
	}
	pod := get(d, "spec", "template", "spec")
	if sa := get(pod, "serviceAccountName"); sa != "rel-ringchat-operator" {
		t.Errorf("serviceAccountName %v", sa)
	}
	psc := get(pod, "securityContext")
	if get(psc, "runAsNonRoot") != true || get(psc, "runAsUser") != float64(65532) || get(psc, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("pod securityContext %v", psc)
	}
	c := get(pod, "containers", 0)
	if img := get(c, "image"); img != "ringchat/ringchat-operator:dev" {
		t.Errorf("image %v, want the appVersion tag", img)
	}
	csc := get(c, "securityContext")
	if get(csc, "readOnlyRootFilesystem") != true || get(csc, "allowPrivilegeEscalation") != false ||
		!reflect.DeepEqual(get(csc, "capabilities", "drop"), []any{"ALL"}) {
		t.Errorf("container securityContext %v", csc)
	}
	wantArgs := []any{"--leader-elect", "--leader-election-namespace=chat-system", "--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081", "--log-level=info", "--workers=2"}
	if args := get(c, "args"); !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("args %v, want %v", args, wantArgs)
	}
	if get(c, "livenessProbe", "httpGet", "path") != "/healthz" || get(c, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Errorf("probes %v %v", get(c, "livenessProbe"), get(c, "readinessProbe"))
	}
	if get(c, "resources", "requests", "memory") != "64Mi" || get(c, "resources", "limits", "memory") != "256Mi" || get(c, "resources", "limits", "cpu") != nil {
		t.Errorf("resources %v", get(c, "resources"))
	}

	// The ClusterRole carries exactly the generated rules.
	cr := find(t, objs, "ClusterRole", "rel-ringchat-operator")
	if got, want := get(cr, "rules"), get(readYAML(t, roleSrc), "rules"); !reflect.DeepEqual(got, want) {
		t.Errorf("ClusterRole rules differ from config/rbac/role.yaml:\n got %v\nwant %v", got, want)
	}
	crb := find(t, objs, "ClusterRoleBinding", "rel-ringchat-operator")
	if get(crb, "subjects", 0, "name") != "rel-ringchat-operator" || get(crb, "subjects", 0, "namespace") != "chat-system" {
		t.Errorf("ClusterRoleBinding subjects %v", get(crb, "subjects"))
	}

	// The CRD is the generated one plus the keep annotation (and labels).
	crd := find(t, objs, "CustomResourceDefinition", "chatclusters.chat.ringchat.io")
	if a := get(crd, "metadata", "annotations", "helm.sh/resource-policy"); a != "keep" {
		t.Errorf("CRD resource-policy annotation %v, want keep", a)
	}
	gen := readYAML(t, crdSource)
	if !reflect.DeepEqual(get(crd, "spec"), get(gen, "spec")) {
		t.Errorf("rendered CRD spec differs from %s", crdSource)
	}
	if get(crd, "metadata", "annotations", "controller-gen.kubebuilder.io/version") != get(gen, "metadata", "annotations", "controller-gen.kubebuilder.io/version") {
		t.Errorf("rendered CRD lost controller-gen's annotation")
	}

	svc := find(t, objs, "Service", "rel-ringchat-operator-metrics")
	if get(svc, "spec", "ports", 0, "port") != float64(8080) || get(svc, "spec", "ports", 0, "targetPort") != "metrics" {
		t.Errorf("metrics Service ports %v", get(svc, "spec", "ports"))
	}
	if !reflect.DeepEqual(get(svc, "spec", "selector"), get(d, "spec", "selector", "matchLabels")) {
		t.Errorf("metrics Service selector %v does not match the Deployment's", get(svc, "spec", "selector"))
	}
}

func TestRenderAllOptions(t *testing.T) {
	objs := render(t, allOptions...)
	want := []string{
		"ChatCluster/lobby",
		"ClusterRole/rel-rc-operator",
		"ClusterRoleBinding/rel-rc-operator",
		"ConfigMap/rel-rc-chatcluster",
		"Deployment/rel-rc-operator",
		"NetworkPolicy/rel-rc-operator",
		"Pod/rel-rc-test-chat",
		"Role/rel-rc-operator-leader-election",
		"RoleBinding/rel-rc-operator-leader-election",
		"Service/rel-rc-operator-metrics",
		"ServiceAccount/custom-sa",
		"ServiceMonitor/rel-rc-operator",
	}
	if got := kinds(objs); !reflect.DeepEqual(got, want) {
		t.Fatalf("rendered objects (crds.install=false: no CRD)\n got %v\nwant %v", got, want)
	}

	d := find(t, objs, "Deployment", "rel-rc-operator")
	pod := get(d, "spec", "template", "spec")
	c := get(pod, "containers", 0)
	wantArgs := []any{"--leader-elect", "--leader-election-namespace=chat-system", "--metrics-bind-address=:9090",
		"--cluster-from-configmap=chat-system/rel-rc-chatcluster",
		"--health-probe-bind-address=:9091", "--log-level=debug", "--workers=4"}
	if args := get(c, "args"); !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("args %v, want %v", args, wantArgs)
	}
	for _, check := range []struct {
		got  any
		want any
	}{
		{get(d, "spec", "replicas"), float64(3)},
		{get(c, "image"), "ringchat/ringchat-operator:v9.9.9"},
		{get(c, "imagePullPolicy"), "Always"},
		{get(c, "resources", "limits", "cpu"), "500m"},
		{get(pod, "serviceAccountName"), "custom-sa"},
		{get(pod, "imagePullSecrets", 0, "name"), "regcred"},
		{get(pod, "nodeSelector", "disk"), "ssd"},
		{get(pod, "priorityClassName"), "high"},
		{get(d, "spec", "template", "metadata", "annotations", "p"), "q"},
		{get(d, "spec", "template", "metadata", "labels", "team"), "chat"},
		{get(find(t, objs, "ServiceAccount", "custom-sa"), "metadata", "annotations", "a"), "b"},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("got %v, want %v", check.got, check.want)
		}
	}

	sm := find(t, objs, "ServiceMonitor", "rel-rc-operator")
	if get(sm, "apiVersion") != "monitoring.coreos.com/v1" || get(sm, "metadata", "labels", "release") != "prom" ||
		get(sm, "spec", "endpoints", 0, "port") != "metrics" || get(sm, "spec", "endpoints", 0, "interval") != "15s" {
		t.Errorf("ServiceMonitor %v", sm)
	}
	np := find(t, objs, "NetworkPolicy", "rel-rc-operator")
	if get(np, "spec", "ingress", 0, "from", 0, "namespaceSelector", "matchLabels", "name") != "monitoring" ||
		get(np, "spec", "ingress", 0, "ports", 0, "port") != "metrics" {
		t.Errorf("NetworkPolicy %v", get(np, "spec"))
	}

	cc := find(t, objs, "ChatCluster", "lobby")
	wantSpec := obj{
		"replicas":          float64(5),
		"image":             "example.com/chatd:1.2.3",
		"historySize":       float64(5000),
		"replicationFactor": float64(3),
		"auth":              obj{"allowAnonymous": true},
		"service":           obj{"type": "NodePort", "port": float64(8088)},
	}
	if get(cc, "apiVersion") != "chat.ringchat.io/v1alpha1" || !reflect.DeepEqual(get(cc, "spec"), wantSpec) {
		t.Errorf("ChatCluster %v\nwant spec %v", cc, wantSpec)
	}

	tp := find(t, objs, "Pod", "rel-rc-test-chat")
	if get(tp, "metadata", "annotations", "helm.sh/hook") != "test" ||
		get(tp, "metadata", "annotations", "helm.sh/hook-delete-policy") != "before-hook-creation,hook-succeeded" {
		t.Errorf("test Pod hook annotations %v", get(tp, "metadata", "annotations"))
	}
	tc := get(tp, "spec", "containers", 0)
	if get(tc, "image") != "ringchat/chatctl:t1" || get(tc, "imagePullPolicy") != "Never" {
		t.Errorf("test Pod image %v %v", get(tc, "image"), get(tc, "imagePullPolicy"))
	}
	wantTestArgs := []any{"send", "--url", "ws://lobby.chat-system.svc:8088/ws", "--name", "helm-test", "--room", "helm-test", "--timeout", "20s", "hello"}
	if args := get(tc, "args"); !reflect.DeepEqual(args, wantTestArgs) {
		t.Errorf("test Pod args %v, want %v", args, wantTestArgs)
	}
	if get(tp, "spec", "securityContext", "runAsNonRoot") != true || get(tc, "securityContext", "readOnlyRootFilesystem") != true {
		t.Errorf("test Pod security context %v %v", get(tp, "spec", "securityContext"), get(tc, "securityContext"))
	}
}

func TestRenderClusterDefaultsAndJWT(t *testing.T) {
	objs := render(t, "--set", "cluster.enabled=true")
	cc := find(t, objs, "ChatCluster", "rel")
	if get(cc, "spec", "image") != "ringchat/chatd:dev" || get(cc, "spec", "replicas") != float64(3) ||
		get(cc, "spec", "service", "port") != float64(80) {
		t.Errorf("default ChatCluster spec %v", get(cc, "spec"))
	}
	tp := find(t, objs, "Pod", "rel-ringchat-test-chat")
	if args := get(tp, "spec", "containers", 0, "args"); !slices.Contains(args.([]any), any("ws://rel.chat-system.svc:80/ws")) {
		t.Errorf("test Pod args %v", args)
	}

	objs = render(t, "--set", "cluster.enabled=true", "--set", "cluster.auth.allowAnonymous=false", "--set", "cluster.auth.jwtSecretName=chat-jwt")
	cc = find(t, objs, "ChatCluster", "rel")
	if want := (obj{"allowAnonymous": false, "jwtSecretRef": obj{"name": "chat-jwt"}}); !reflect.DeepEqual(get(cc, "spec", "auth"), want) {
		t.Errorf("auth %v, want %v", get(cc, "spec", "auth"), want)
	}
	for _, o := range objs {
		if get(o, "kind") == "Pod" {
			t.Errorf("no anonymous test Pod expected with JWT-only auth, got %v", get(o, "metadata", "name"))
		}
	}
}

// TestSingleInstallWithCluster: one `helm install --set cluster.enabled=true`
// creates the CRD, the operator and the ChatCluster. Helm maps every object
// of a release to an API resource before creating any, so the release must
// hold no object of a kind its own CRD defines: the ChatCluster travels as
// data of a ConfigMap, which the operator's Deployment is pointed at.
func TestSingleInstallWithCluster(t *testing.T) {
	out, stderr, err := runHelm(t, "template", "rel", chartDir, "--namespace", "chat-system", "--set", "cluster.enabled=true")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr)
	}
	var docs []obj // the release's own objects, not the embedded manifest
	for _, doc := range strings.Split(out, "\n---") {
		var o obj
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(o) > 0 {
			docs = append(docs, o)
		}
	}
	crd := find(t, docs, "CustomResourceDefinition", "chatclusters.chat.ringchat.io")
	group, _ := get(crd, "spec", "group").(string)
	if group != "chat.ringchat.io" {
		t.Fatalf("CRD group %q", group)
	}
	for _, o := range docs {
		if v, _ := get(o, "apiVersion").(string); strings.HasPrefix(v, group+"/") {
			t.Errorf("%s %v is of the chart's own CRD: helm install cannot map it before the CRD exists", get(o, "kind"), get(o, "metadata", "name"))
		}
	}

	cm := find(t, docs, "ConfigMap", "rel-ringchat-chatcluster")
	if get(cm, "metadata", "namespace") != "chat-system" || get(cm, "metadata", "labels", "chat.ringchat.io/chatcluster-manifest") != "true" {
		t.Errorf("ConfigMap metadata %v", get(cm, "metadata"))
	}
	manifest, _ := get(cm, "data", "chatcluster.yaml").(string)
	var cc obj
	if err := yaml.Unmarshal([]byte(manifest), &cc); err != nil {
		t.Fatalf("the ConfigMap's chatcluster.yaml: %v\n%s", err, manifest)
	}
	if get(cc, "apiVersion") != group+"/v1alpha1" || get(cc, "kind") != "ChatCluster" ||
		get(cc, "metadata", "name") != "rel" || get(cc, "metadata", "namespace") != "chat-system" {
		t.Errorf("embedded manifest %v, want ChatCluster chat-system/rel", cc)
	}

	d := find(t, docs, "Deployment", "rel-ringchat-operator")
	args, _ := get(d, "spec", "template", "spec", "containers", 0, "args").([]any)
	if want := "--cluster-from-configmap=chat-system/rel-ringchat-chatcluster"; !slices.Contains(args, any(want)) {
		t.Errorf("operator args %v lack %s", args, want)
	}
}

func TestRenderRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // all in helm's error text
	}{
		{[]string{"--set", "replicaCount=abc"}, []string{"/replicaCount", "want integer"}},
		{[]string{"--set", "bogus=1"}, []string{"bogus", "not allowed"}},
		{[]string{"--set", "cluster.bogus=1"}, []string{"/cluster", "bogus", "not allowed"}},
		{[]string{"--set", "image.bogus=1"}, []string{"/image", "bogus"}},
		{[]string{"--set", "cluster.service.type=Ingress"}, []string{"/cluster/service/type"}},
		{[]string{"--set", "cluster.replicas=-1"}, []string{"/cluster/replicas"}},
		{[]string{"--set", "cluster.replicationFactor=6"}, []string{"/cluster/replicationFactor"}},
		{[]string{"--set", "operator.logLevel=loud"}, []string{"/operator/logLevel"}},
		{[]string{"--set", "crds.install=maybe"}, []string{"/crds/install", "want boolean"}},
		{[]string{"--set", "metrics.port=0"}, []string{"/metrics/port"}},
		{[]string{"--set", "cluster.enabled=true", "--set", "cluster.auth.allowAnonymous=false"}, []string{"cluster.auth.jwtSecretName"}},
		{[]string{"--set", "cluster.enabled=true", "--set", "cluster.replicas=1"}, []string{"cannot exceed cluster.replicas"}},
	} {
		out, stderr, err := runHelm(t, append([]string{"template", "rel", chartDir}, tc.args...)...)
		if err == nil {
			t.Errorf("helm template %v succeeded, want an error\n%s", tc.args, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("helm template %v: error does not mention %q:\n%s", tc.args, w, stderr)
			}
		}
	}
}

// TestNotes renders NOTES.txt, which helm template leaves out, by copying the
// chart and NOTES.txt as an ordinary template.
func TestNotes(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// helm parses what it renders as YAML: wrap the notes in a ConfigMap.
	wrapped := `{{- define "test.notes" }}` + string(notes) + "{{ end }}\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include \"test.notes\" . | quote }}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "notes-rendered.yaml"), []byte(wrapped), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--set", "cluster.enabled=true", "--set", "cluster.name=chat", "--set", "cluster.service.port=8088"},
			[]string{"port-forward svc/chat 8080:8088", "http://127.0.0.1:8080/", "get chatclusters", "helm test rel -n chat-system"}},
		{nil, []string{"port-forward svc/<cluster> 8080:<service port>", "http://127.0.0.1:8080/", "get chatclusters"}},
	} {
		out, stderr, err := runHelm(t, append([]string{"template", "rel", dir, "--namespace", "chat-system",
			"--show-only", "templates/notes-rendered.yaml"}, tc.args...)...)
		if err != nil {
			t.Fatalf("rendering NOTES.txt: %v\n%s", err, stderr)
		}
		var cm obj
		if err := yaml.Unmarshal([]byte(out), &cm); err != nil {
			t.Fatalf("rendered NOTES.txt: %v\n%s", err, out)
		}
		out, _ = get(cm, "data", "notes").(string)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("NOTES.txt (%v) lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
}

// TestChartFilesMatchGenerated fails when files/ drifted from config/.
func TestChartFilesMatchGenerated(t *testing.T) {
	for _, f := range []struct{ chart, source string }{{crdFile, crdSource}, {roleFile, roleSrc}} {
		a, err := os.ReadFile(f.chart)
		if err != nil {
			t.Fatalf("%v: run make chart-crd", err)
		}
		b, err := os.ReadFile(f.source)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("charts/ringchat/%s differs from %s: run make chart-crd", f.chart, filepath.Clean(strings.TrimPrefix(f.source, "../../")))
		}
	}
}

// TestReadmeDocumentsEveryValue fails when a leaf of values.yaml has no row in
// README.md's table.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var leaves func(prefix string, v any)
	leaves = func(prefix string, v any) {
		if m, ok := v.(obj); ok && len(m) > 0 {
			for k, sub := range m {
				leaves(prefix+k+".", sub)
			}
			return
		}
		key := strings.TrimSuffix(prefix, ".")
		if !strings.Contains(string(readme), "| `"+key+"` |") {
			t.Errorf("README.md has no table row for value %s", key)
		}
	}
	leaves("", readYAML(t, "values.yaml"))
}
