package charts_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "."
	repoRoot  = "../.."
	crdFile   = "files/chatclusters.yaml"
	crdSource = "../../config/crd/bases/chat.ringchat.io_chatclusters.yaml"
	roleFile  = "files/role.yaml"
	roleSrc   = "../../config/rbac/role.yaml"
	leRoleSrc = "../../config/rbac/leader_election_role.yaml"
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

// renderRelease runs helm template with the extra args and returns the
// release's objects.
func renderRelease(t *testing.T, args ...string) []obj {
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
		}
	}
	return objs
}

// render is renderRelease plus the optional ChatCluster, which travels
// inside a ConfigMap (see templates/chatcluster.yaml): parsed too, so that
// tests can find it.
func render(t *testing.T, args ...string) []obj {
	t.Helper()
	var objs []obj
	for _, o := range renderRelease(t, args...) {
		objs = append(objs, o)
		if m, ok := get(o, "data", "chatcluster.yaml").(string); ok && get(o, "kind") == "ConfigMap" {
			var cc obj
			if err := yaml.Unmarshal([]byte(m), &cc); err != nil {
				t.Fatalf("embedded ChatCluster does not parse: %v\n%s", err, m)
			}
			objs = append(objs, cc)
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

// allOptions sets every documented option away from its default, except
// the ones that need a rendering of their own (the option sets below).
var allOptions = []string{
	"--set", "nameOverride=rc",
	"--set", "replicaCount=3",
	"--set", "image.repository=registry.example/ringchat-operator",
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
	"--set", "resources.requests.cpu=50m",
	"--set", "resources.requests.memory=128Mi",
	"--set", "resources.limits.cpu=500m",
	"--set", "resources.limits.memory=1Gi",
	"--set", "metrics.port=9090",
	"--set", "metrics.serviceMonitor.enabled=true",
	"--set", "metrics.serviceMonitor.interval=15s",
	"--set", "metrics.serviceMonitor.labels.release=prom",
	"--set", "metrics.chatdServiceMonitor.enabled=true",
	"--set", "metrics.chatdServiceMonitor.interval=20s",
	"--set", "metrics.chatdServiceMonitor.labels.release=prom",
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
	"--set", "cluster.resources.requests.cpu=250m",
	"--set", "cluster.resources.requests.memory=512Mi",
	"--set", "cluster.resources.limits.cpu=2",
	"--set", "cluster.resources.limits.memory=2Gi",
	"--set", "cluster.pdb.minAvailable=60%",
	"--set", "cluster.networkPolicy.adminFromNamespaceLabels.team=monitoring",
	"--set", "cluster.storage.enabled=true",
	"--set", "cluster.storage.size=20Gi",
	"--set", "cluster.storage.storageClassName=fast-ssd",
	"--set", "cluster.storage.retention.maxAge=168h",
	"--set", "cluster.storage.retention.maxMessages=100000",
	"--set", "cluster.storage.reserve=1Gi",
	"--set", "cluster.serverAPI.enabled=true",
	"--set-json", `cluster.socketIO={"namespaces":[{"name":"/"},{"name":"/staff","tokenOnly":true}],"recoveryWindow":"5m","pingTimeout":"30s"}`,
	"--set-json", `cluster.hooks={"connect":{"url":"http://backend.shop.svc:8080/chat/connect"},"send":{"url":"http://mod.shop.svc/send","timeout":"300ms","onFailure":"allow"},"signingSecretRef":{"name":"shop-hooks"}}`,
	"--set", "cluster.podTemplate.labels.team=chat",
	"--set", "cluster.podTemplate.annotations.note=hi",
	"--set", "cluster.podTemplate.nodeSelector.pool=chat",
	"--set-json", `cluster.podTemplate.tolerations=[{"key":"dedicated","operator":"Equal","value":"chat","effect":"NoSchedule"}]`,
	"--set-json", `cluster.podTemplate.affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In","values":["chat"]}]}]}}}`,
	"--set-json", `cluster.podTemplate.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule"}]`,
	"--set", "cluster.podTemplate.priorityClassName=chat-critical",
	"--set", "cluster.podTemplate.imagePullSecrets[0].name=chat-regcred",
	"--set-json", `cluster.podTemplate.env=[{"name":"CHATD_LOG_LEVEL","value":"debug"}]`,
	"--set", "tests.image.repository=registry.example/chatctl",
	"--set", "tests.image.tag=t1",
	"--set", "tests.image.pullPolicy=Never",
}

// The options that need a rendering of their own.
var (
	fullnameOptions  = []string{"--set", "fullnameOverride=chat-op", "--set", "cluster.enabled=true"}
	existingSAOption = []string{"--set", "serviceAccount.create=false", "--set", "serviceAccount.name=shared-sa"}
	defaultSAOption  = []string{"--set", "serviceAccount.create=false"}
	noTestsOptions   = []string{"--set", "cluster.enabled=true", "--set", "tests.enabled=false"}
	jwtOptions       = []string{"--set", "cluster.enabled=true", "--set", "cluster.auth.allowAnonymous=false", "--set", "cluster.auth.jwtSecretName=chat-jwt"}
	// A key set instead of a shared secret, and no NetworkPolicy.
	jwksOptions = []string{"--set", "cluster.enabled=true", "--set", "cluster.auth.allowAnonymous=false", "--set", "cluster.auth.jwksSecretName=chat-jwks",
		"--set", "cluster.networkPolicy.enabled=false"}
	// Resources removed: an empty value or null drops an entry, and a map
	// left empty drops its key.
	noResourcesOptions = []string{"--set", "resources.requests.cpu=", "--set", "resources.limits=null",
		"--set", "cluster.enabled=true", "--set", "cluster.resources.requests=null", "--set", "cluster.resources.limits.memory="}
	pdbMaxOptions = []string{"--set", "cluster.enabled=true", "--set", "cluster.pdb.maxUnavailable=0"}
	// Storage with its defaults: no class (the cluster's default), no
	// reserve (chatd's derived one).
	storageDefaultOptions = []string{"--set", "cluster.enabled=true", "--set", "cluster.storage.enabled=true"}
)

// optionSets are the renderings TestEveryValueIsSet looks through.
var optionSets = map[string][]string{
	"allOptions": allOptions, "fullnameOptions": fullnameOptions, "existingSAOption": existingSAOption,
	"defaultSAOption": defaultSAOption, "noTestsOptions": noTestsOptions, "jwtOptions": jwtOptions,
	"noResourcesOptions": noResourcesOptions, "pdbMaxOptions": pdbMaxOptions, "storageDefaultOptions": storageDefaultOptions,
	"jwksOptions": jwksOptions,
}

func TestLintStrict(t *testing.T) {
	for name, args := range map[string][]string{"defaults": nil, "all options": allOptions} {
		out, stderr, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil {
			t.Errorf("helm lint --strict (%s): %v\n%s%s", name, err, out, stderr)
		}
	}
}

// checkRestricted fails unless the pod spec meets the restricted Pod
// Security Standard (the parts a chart controls).
func checkRestricted(t *testing.T, what string, pod any) {
	t.Helper()
	psc := get(pod, "securityContext")
	if get(psc, "runAsNonRoot") != true {
		t.Errorf("%s: pod runAsNonRoot %v, want true", what, get(psc, "runAsNonRoot"))
	}
	if u, ok := get(psc, "runAsUser").(float64); ok && u == 0 {
		t.Errorf("%s: pod runs as root", what)
	}
	for _, k := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if get(pod, k) == true {
			t.Errorf("%s: %s", what, k)
		}
	}
	vols, _ := get(pod, "volumes").([]any)
	for _, v := range vols {
		if get(v, "hostPath") != nil {
			t.Errorf("%s: hostPath volume %v", what, get(v, "name"))
		}
	}
	var containers []any
	for _, k := range []string{"initContainers", "containers"} {
		cs, _ := get(pod, k).([]any)
		containers = append(containers, cs...)
	}
	if len(containers) == 0 {
		t.Errorf("%s: no containers", what)
	}
	for _, c := range containers {
		name := fmt.Sprintf("%s container %v", what, get(c, "name"))
		csc := get(c, "securityContext")
		if get(csc, "allowPrivilegeEscalation") != false {
			t.Errorf("%s: allowPrivilegeEscalation %v, want false", name, get(csc, "allowPrivilegeEscalation"))
		}
		if get(csc, "privileged") == true {
			t.Errorf("%s: privileged", name)
		}
		if !reflect.DeepEqual(get(csc, "capabilities", "drop"), []any{"ALL"}) {
			t.Errorf("%s: capabilities drop %v, want [ALL]", name, get(csc, "capabilities", "drop"))
		}
		if add, _ := get(csc, "capabilities", "add").([]any); len(add) > 0 && !reflect.DeepEqual(add, []any{"NET_BIND_SERVICE"}) {
			t.Errorf("%s: capabilities add %v", name, add)
		}
		if u, ok := get(csc, "runAsUser").(float64); ok && u == 0 {
			t.Errorf("%s: runs as root", name)
		}
		if get(csc, "runAsNonRoot") == false {
			t.Errorf("%s: runAsNonRoot false", name)
		}
		if p := get(c, "securityContext", "seccompProfile", "type"); p == nil && get(psc, "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("%s: no RuntimeDefault seccomp profile", name)
		}
		ports, _ := get(c, "ports").([]any)
		for _, p := range ports {
			if get(p, "hostPort") != nil {
				t.Errorf("%s: hostPort %v", name, get(p, "hostPort"))
			}
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
	checkRestricted(t, "operator pod", pod)
	c := get(pod, "containers", 0)
	if img := get(c, "image"); img != "ringchat/ringchat-operator:dev" {
		t.Errorf("image %v, want the appVersion tag", img)
	}
	if get(c, "imagePullPolicy") != "IfNotPresent" {
		t.Errorf("imagePullPolicy %v", get(c, "imagePullPolicy"))
	}
	csc := get(c, "securityContext")
	if get(csc, "readOnlyRootFilesystem") != true || get(csc, "allowPrivilegeEscalation") != false ||
		!reflect.DeepEqual(get(csc, "capabilities", "drop"), []any{"ALL"}) {
		t.Errorf("container securityContext %v", csc)
	}
	wantArgs := []any{"--leader-elect", "--leader-election-namespace=chat-system", "--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081", "--log-level=info", "--workers=2", "--operator-namespace=chat-system"}
	if args := get(c, "args"); !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("args %v, want %v", args, wantArgs)
	}
	wantPorts := []any{
		obj{"name": "metrics", "containerPort": float64(8080), "protocol": "TCP"},
		obj{"name": "probes", "containerPort": float64(8081), "protocol": "TCP"},
	}
	if ports := get(c, "ports"); !reflect.DeepEqual(ports, wantPorts) {
		t.Errorf("ports %v, want %v", ports, wantPorts)
	}
	if get(c, "livenessProbe", "httpGet", "path") != "/healthz" || get(c, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Errorf("probes %v %v", get(c, "livenessProbe"), get(c, "readinessProbe"))
	}
	wantRes := obj{"requests": obj{"cpu": "10m", "memory": "64Mi"}, "limits": obj{"memory": "256Mi"}}
	if res := get(c, "resources"); !reflect.DeepEqual(res, wantRes) {
		t.Errorf("resources %v, want %v", res, wantRes)
	}
	for _, k := range []string{"imagePullSecrets", "nodeSelector", "priorityClassName"} {
		if v := get(pod, k); v != nil {
			t.Errorf("%s %v, want none by default", k, v)
		}
	}
	if a := get(d, "spec", "template", "metadata", "annotations"); a != nil {
		t.Errorf("pod annotations %v, want none by default", a)
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
	// The leader-election Role has config/rbac's rules (which the operator
	// binary's envtest test runs with).
	le := find(t, objs, "Role", "rel-ringchat-operator-leader-election")
	if got, want := get(le, "rules"), get(readYAML(t, leRoleSrc), "rules"); !reflect.DeepEqual(got, want) {
		t.Errorf("leader-election Role rules differ from config/rbac/leader_election_role.yaml:\n got %v\nwant %v", got, want)
	}
	if get(le, "metadata", "namespace") != "chat-system" {
		t.Errorf("leader-election Role namespace %v", get(le, "metadata", "namespace"))
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
		"ServiceMonitor/rel-rc-operator-chatd",
	}
	if got := kinds(objs); !reflect.DeepEqual(got, want) {
		t.Fatalf("rendered objects (crds.install=false: no CRD)\n got %v\nwant %v", got, want)
	}

	d := find(t, objs, "Deployment", "rel-rc-operator")
	pod := get(d, "spec", "template", "spec")
	c := get(pod, "containers", 0)
	wantArgs := []any{"--leader-elect", "--leader-election-namespace=chat-system", "--metrics-bind-address=:9090",
		"--cluster-from-configmap=chat-system/rel-rc-chatcluster",
		"--health-probe-bind-address=:9091", "--log-level=debug", "--workers=4", "--operator-namespace=chat-system"}
	if args := get(c, "args"); !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("args %v, want %v", args, wantArgs)
	}
	svc := find(t, objs, "Service", "rel-rc-operator-metrics")
	for _, check := range []struct {
		got  any
		want any
	}{
		{get(d, "spec", "replicas"), float64(3)},
		{get(c, "image"), "registry.example/ringchat-operator:v9.9.9"},
		{get(c, "imagePullPolicy"), "Always"},
		{get(c, "resources"), obj{"requests": obj{"cpu": "50m", "memory": "128Mi"}, "limits": obj{"cpu": "500m", "memory": "1Gi"}}},
		{get(c, "ports"), []any{
			obj{"name": "metrics", "containerPort": float64(9090), "protocol": "TCP"},
			obj{"name": "probes", "containerPort": float64(9091), "protocol": "TCP"},
		}},
		{get(svc, "spec", "ports"), []any{obj{"name": "metrics", "port": float64(9090), "targetPort": "metrics", "protocol": "TCP"}}},
		{get(c, "livenessProbe", "httpGet", "port"), "probes"},
		{get(pod, "serviceAccountName"), "custom-sa"},
		{get(pod, "imagePullSecrets", 0, "name"), "regcred"},
		{get(pod, "nodeSelector", "disk"), "ssd"},
		{get(pod, "priorityClassName"), "high"},
		{get(d, "spec", "template", "metadata", "annotations", "p"), "q"},
		{get(d, "spec", "template", "metadata", "labels", "team"), "chat"},
		{get(find(t, objs, "ServiceAccount", "custom-sa"), "metadata", "annotations", "a"), "b"},
		{get(find(t, objs, "ClusterRoleBinding", "rel-rc-operator"), "subjects", 0, "name"), "custom-sa"},
		{get(find(t, objs, "RoleBinding", "rel-rc-operator-leader-election"), "subjects", 0, "name"), "custom-sa"},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("got %v, want %v", check.got, check.want)
		}
	}
	checkRestricted(t, "operator pod", pod)

	sm := find(t, objs, "ServiceMonitor", "rel-rc-operator")
	if get(sm, "apiVersion") != "monitoring.coreos.com/v1" || get(sm, "metadata", "labels", "release") != "prom" ||
		get(sm, "spec", "endpoints", 0, "port") != "metrics" || get(sm, "spec", "endpoints", 0, "interval") != "15s" {
		t.Errorf("ServiceMonitor %v", sm)
	}
	csm := find(t, objs, "ServiceMonitor", "rel-rc-operator-chatd")
	if get(csm, "metadata", "labels", "release") != "prom" || get(csm, "spec", "endpoints", 0, "port") != "admin" ||
		get(csm, "spec", "endpoints", 0, "interval") != "20s" || get(csm, "spec", "namespaceSelector", "any") != true ||
		get(csm, "spec", "selector", "matchLabels", "chat.ringchat.io/metrics") != "true" {
		t.Errorf("chatd ServiceMonitor %v", csm)
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
		"resources": obj{
			"requests": obj{"cpu": "250m", "memory": "512Mi"},
			"limits":   obj{"cpu": float64(2), "memory": "2Gi"},
		},
		"podDisruptionBudget": obj{"minAvailable": "60%"},
		"networkPolicy":       obj{"enabled": true, "adminFromNamespaces": obj{"matchLabels": obj{"team": "monitoring"}}},
		"storage": obj{
			"size":             "20Gi",
			"storageClassName": "fast-ssd",
			"retention":        obj{"maxAge": "168h", "maxMessages": float64(100000)},
			"reserve":          "1Gi",
		},
		"serverAPI": obj{"enabled": true},
		"socketIO": obj{
			"namespaces":     []any{obj{"name": "/"}, obj{"name": "/staff", "tokenOnly": true}},
			"recoveryWindow": "5m",
			"pingTimeout":    "30s",
		},
		"hooks": obj{
			"connect":          obj{"url": "http://backend.shop.svc:8080/chat/connect"},
			"send":             obj{"url": "http://mod.shop.svc/send", "timeout": "300ms", "onFailure": "allow"},
			"signingSecretRef": obj{"name": "shop-hooks"},
		},
		"podTemplate": obj{
			"labels":       obj{"team": "chat"},
			"annotations":  obj{"note": "hi"},
			"nodeSelector": obj{"pool": "chat"},
			"tolerations":  []any{obj{"key": "dedicated", "operator": "Equal", "value": "chat", "effect": "NoSchedule"}},
			"affinity": obj{"nodeAffinity": obj{"requiredDuringSchedulingIgnoredDuringExecution": obj{"nodeSelectorTerms": []any{
				obj{"matchExpressions": []any{obj{"key": "pool", "operator": "In", "values": []any{"chat"}}}},
			}}}},
			"topologySpreadConstraints": []any{obj{"maxSkew": float64(1), "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}},
			"priorityClassName":         "chat-critical",
			"imagePullSecrets":          []any{obj{"name": "chat-regcred"}},
			"env":                       []any{obj{"name": "CHATD_LOG_LEVEL", "value": "debug"}},
		},
	}
	if get(cc, "apiVersion") != "chat.ringchat.io/v1alpha1" || !reflect.DeepEqual(get(cc, "spec"), wantSpec) {
		t.Errorf("ChatCluster spec\n got %v\nwant %v", get(cc, "spec"), wantSpec)
	}

	tp := find(t, objs, "Pod", "rel-rc-test-chat")
	checkTestPod(t, tp, "registry.example/chatctl:t1", "Never", "ws://lobby.chat-system.svc:8088/ws")
	if get(tp, "spec", "imagePullSecrets", 0, "name") != "regcred" {
		t.Errorf("test Pod imagePullSecrets %v", get(tp, "spec", "imagePullSecrets"))
	}
}

// checkTestPod checks the helm test hook: two chatctl containers, one
// tailing a room of the Pod's own (named after its UID) from its start
// until one message arrives, the other sending one to it, both bounded in
// time, under the restricted Pod Security Standard.
func checkTestPod(t *testing.T, tp obj, image, pullPolicy, url string) {
	t.Helper()
	if get(tp, "metadata", "annotations", "helm.sh/hook") != "test" ||
		get(tp, "metadata", "annotations", "helm.sh/hook-delete-policy") != "before-hook-creation,hook-succeeded" {
		t.Errorf("test Pod hook annotations %v", get(tp, "metadata", "annotations"))
	}
	spec := get(tp, "spec")
	deadline, _ := get(spec, "activeDeadlineSeconds").(float64)
	if get(spec, "restartPolicy") != "OnFailure" || deadline <= 0 || deadline > 300 {
		t.Errorf("restartPolicy %v activeDeadlineSeconds %v: want OnFailure, bounded (at most 300 s)", get(spec, "restartPolicy"), get(spec, "activeDeadlineSeconds"))
	}
	if get(spec, "automountServiceAccountToken") != false {
		t.Errorf("the test Pod mounts a service account token")
	}
	checkRestricted(t, "test Pod", spec)
	cs, _ := get(spec, "containers").([]any)
	if len(cs) != 2 || get(cs[0], "name") != "receive" || get(cs[1], "name") != "send" {
		t.Fatalf("test Pod containers %v, want receive and send", cs)
	}
	const room = "helm-test/$(POD_UID)"
	wantArgs := map[string][]any{
		"receive": {"tail", "--url", url, "--name", "helm-test-receiver", "--room", room, "--since", "0", "--count", "1", "--timeout", "60s"},
		"send":    {"send", "--url", url, "--name", "helm-test-sender", "--room", room, "--timeout", "60s", "hello from helm test"},
	}
	wantEnv := []any{obj{"name": "POD_UID", "valueFrom": obj{"fieldRef": obj{"fieldPath": "metadata.uid"}}}}
	for _, c := range cs {
		name := get(c, "name").(string)
		if get(c, "image") != image || get(c, "imagePullPolicy") != pullPolicy {
			t.Errorf("%s: image %v %v, want %s %s", name, get(c, "image"), get(c, "imagePullPolicy"), image, pullPolicy)
		}
		if args := get(c, "args"); !reflect.DeepEqual(args, wantArgs[name]) {
			t.Errorf("%s: args %v\nwant %v", name, args, wantArgs[name])
		}
		if env := get(c, "env"); !reflect.DeepEqual(env, wantEnv) {
			t.Errorf("%s: env %v, want POD_UID from metadata.uid (the room)", name, env)
		}
		if get(c, "terminationMessagePolicy") != "FallbackToLogsOnError" {
			t.Errorf("%s: terminationMessagePolicy %v: a failure should show chatctl's last words", name, get(c, "terminationMessagePolicy"))
		}
		if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "resources", "limits", "memory") == nil {
			t.Errorf("%s: securityContext %v resources %v", name, get(c, "securityContext"), get(c, "resources"))
		}
		// Each client gives up before the Pod's deadline, with its own
		// error (exit 5, "timed out").
		args, _ := get(c, "args").([]any)
		if i := slices.Index(args, any("--timeout")); i < 0 || i+1 >= len(args) {
			t.Errorf("%s: no --timeout", name)
		} else if d, err := time.ParseDuration(args[i+1].(string)); err != nil || d <= 0 || d.Seconds() >= deadline {
			t.Errorf("%s: --timeout %v, want below activeDeadlineSeconds %v", name, args[i+1], deadline)
		}
	}
}

func TestRenderClusterDefaultsAndJWT(t *testing.T) {
	objs := render(t, "--set", "cluster.enabled=true")
	cc := find(t, objs, "ChatCluster", "rel")
	wantSpec := obj{
		"replicas":          float64(3),
		"image":             "ringchat/chatd:dev",
		"historySize":       float64(1000),
		"replicationFactor": float64(2),
		"auth":              obj{"allowAnonymous": true},
		"service":           obj{"type": "ClusterIP", "port": float64(80)},
		"resources":         obj{"requests": obj{"cpu": "100m", "memory": "256Mi"}, "limits": obj{"memory": "1Gi"}},
		"networkPolicy":     obj{"enabled": true},
	}
	if !reflect.DeepEqual(get(cc, "spec"), wantSpec) {
		t.Errorf("default ChatCluster spec\n got %v\nwant %v (no podDisruptionBudget or podTemplate: the operator's defaults)", get(cc, "spec"), wantSpec)
	}
	checkTestPod(t, find(t, objs, "Pod", "rel-ringchat-test-chat"), "ringchat/chatctl:dev", "IfNotPresent", "ws://rel.chat-system.svc:80/ws")

	objs = render(t, jwtOptions...)
	cc = find(t, objs, "ChatCluster", "rel")
	if want := (obj{"allowAnonymous": false, "jwtSecretRef": obj{"name": "chat-jwt"}}); !reflect.DeepEqual(get(cc, "spec", "auth"), want) {
		t.Errorf("auth %v, want %v", get(cc, "spec", "auth"), want)
	}
	for _, o := range objs {
		if get(o, "kind") == "Pod" {
			t.Errorf("no anonymous test Pod expected with JWT-only auth, got %v", get(o, "metadata", "name"))
		}
	}

	cc = find(t, render(t, jwksOptions...), "ChatCluster", "rel")
	if want := (obj{"allowAnonymous": false, "jwksSecretRef": obj{"name": "chat-jwks"}}); !reflect.DeepEqual(get(cc, "spec", "auth"), want) {
		t.Errorf("auth %v, want %v", get(cc, "spec", "auth"), want)
	}
	if want := (obj{"enabled": false}); !reflect.DeepEqual(get(cc, "spec", "networkPolicy"), want) {
		t.Errorf("networkPolicy %v, want %v", get(cc, "spec", "networkPolicy"), want)
	}
}

// TestRenderFullnameOverride: fullnameOverride names every object, the
// chart name plays no part.
func TestRenderFullnameOverride(t *testing.T) {
	objs := render(t, fullnameOptions...)
	want := []string{
		"ChatCluster/rel",
		"ClusterRole/chat-op-operator",
		"ClusterRoleBinding/chat-op-operator",
		"ConfigMap/chat-op-chatcluster",
		"CustomResourceDefinition/chatclusters.chat.ringchat.io",
		"Deployment/chat-op-operator",
		"Pod/chat-op-test-chat",
		"Role/chat-op-operator-leader-election",
		"RoleBinding/chat-op-operator-leader-election",
		"Service/chat-op-operator-metrics",
		"ServiceAccount/chat-op-operator",
	}
	if got := kinds(objs); !reflect.DeepEqual(got, want) {
		t.Fatalf("rendered objects\n got %v\nwant %v", got, want)
	}
	d := find(t, objs, "Deployment", "chat-op-operator")
	if args, _ := get(d, "spec", "template", "spec", "containers", 0, "args").([]any); !slices.Contains(args, any("--cluster-from-configmap=chat-system/chat-op-chatcluster")) {
		t.Errorf("operator args %v", args)
	}
	if get(d, "spec", "template", "spec", "serviceAccountName") != "chat-op-operator" {
		t.Errorf("serviceAccountName %v", get(d, "spec", "template", "spec", "serviceAccountName"))
	}
}

// TestRenderExistingServiceAccount: serviceAccount.create=false renders no
// ServiceAccount and binds the named one (or default).
func TestRenderExistingServiceAccount(t *testing.T) {
	for _, tc := range []struct {
		args []string
		sa   string
	}{{existingSAOption, "shared-sa"}, {defaultSAOption, "default"}} {
		objs := render(t, tc.args...)
		for _, o := range objs {
			if get(o, "kind") == "ServiceAccount" {
				t.Errorf("%v: ServiceAccount %v rendered", tc.args, get(o, "metadata", "name"))
			}
		}
		d := find(t, objs, "Deployment", "rel-ringchat-operator")
		if sa := get(d, "spec", "template", "spec", "serviceAccountName"); sa != tc.sa {
			t.Errorf("%v: serviceAccountName %v, want %s", tc.args, sa, tc.sa)
		}
		for _, b := range []obj{find(t, objs, "ClusterRoleBinding", "rel-ringchat-operator"), find(t, objs, "RoleBinding", "rel-ringchat-operator-leader-election")} {
			if get(b, "subjects", 0, "name") != tc.sa || get(b, "subjects", 0, "namespace") != "chat-system" {
				t.Errorf("%v: %v subjects %v, want %s in chat-system", tc.args, get(b, "kind"), get(b, "subjects"), tc.sa)
			}
		}
	}
}

func TestRenderTestsDisabled(t *testing.T) {
	objs := render(t, noTestsOptions...)
	find(t, objs, "ChatCluster", "rel")
	for _, o := range objs {
		if get(o, "kind") == "Pod" {
			t.Errorf("tests.enabled=false, yet Pod %v rendered", get(o, "metadata", "name"))
		}
	}
}

// TestRenderResourcesRemoved: an empty or null resources entry is left out,
// and so is a requests or limits map left empty.
func TestRenderResourcesRemoved(t *testing.T) {
	objs := render(t, noResourcesOptions...)
	c := get(find(t, objs, "Deployment", "rel-ringchat-operator"), "spec", "template", "spec", "containers", 0)
	if res, want := get(c, "resources"), (obj{"requests": obj{"memory": "64Mi"}}); !reflect.DeepEqual(res, want) {
		t.Errorf("operator resources %v, want %v", res, want)
	}
	cc := find(t, objs, "ChatCluster", "rel")
	if res := get(cc, "spec", "resources"); res != nil {
		t.Errorf("chatd resources %v, want none", res)
	}
	objs = render(t, "--set", "resources=null")
	c = get(find(t, objs, "Deployment", "rel-ringchat-operator"), "spec", "template", "spec", "containers", 0)
	if res := get(c, "resources"); res != nil {
		t.Errorf("operator resources %v with resources=null, want none", res)
	}
}

// TestRenderPDB: cluster.pdb's maxUnavailable (0 included) goes to the
// ChatCluster; both set is refused.
func TestRenderPDB(t *testing.T) {
	cc := find(t, render(t, pdbMaxOptions...), "ChatCluster", "rel")
	if pdb, want := get(cc, "spec", "podDisruptionBudget"), (obj{"maxUnavailable": float64(0)}); !reflect.DeepEqual(pdb, want) {
		t.Errorf("podDisruptionBudget %v, want %v", pdb, want)
	}
}

// TestRenderStorage: cluster.storage.enabled with its defaults gives the
// ChatCluster a 10Gi volume of the default class, 30 days of history, no
// count limit and no reserve (the operator derives it); disabled (the
// default, TestRenderClusterDefaultsAndJWT) gives no storage at all.
func TestRenderStorage(t *testing.T) {
	cc := find(t, render(t, storageDefaultOptions...), "ChatCluster", "rel")
	want := obj{"size": "10Gi", "retention": obj{"maxAge": "720h", "maxMessages": float64(0)}}
	if got := get(cc, "spec", "storage"); !reflect.DeepEqual(got, want) {
		t.Errorf("storage %v, want %v", got, want)
	}
}

// TestSingleInstallWithCluster: one `helm install --set cluster.enabled=true`
// creates the CRD, the operator and the ChatCluster. Helm maps every object
// of a release to an API resource before creating any, so the release must
// hold no object of a kind its own CRD defines: the ChatCluster travels as
// data of a ConfigMap, which the operator's Deployment is pointed at.
func TestSingleInstallWithCluster(t *testing.T) {
	docs := renderRelease(t, "--set", "cluster.enabled=true") // the release's own objects, without the embedded manifest
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
		{[]string{"--set", "cluster.resources.bogus=1"}, []string{"/cluster/resources", "bogus"}},
		{[]string{"--set", "cluster.pdb.maxUnavailable=-1"}, []string{"/cluster/pdb/maxUnavailable"}},
		{[]string{"--set", "cluster.pdb.minAvailable=half"}, []string{"/cluster/pdb/minAvailable"}},
		{[]string{"--set", "cluster.podTemplate.bogus=1"}, []string{"/cluster/podTemplate", "bogus"}},
		{[]string{"--set", "cluster.storage.bogus=1"}, []string{"/cluster/storage", "bogus"}},
		{[]string{"--set", "cluster.storage.size=lots"}, []string{"/cluster/storage/size"}},
		{[]string{"--set", "cluster.storage.size=-1Gi"}, []string{"/cluster/storage/size"}},
		{[]string{"--set", "cluster.storage.storageClassName=Fast_SSD"}, []string{"/cluster/storage/storageClassName"}},
		{[]string{"--set", "cluster.storage.retention.maxAge=forever"}, []string{"/cluster/storage/retention/maxAge"}},
		{[]string{"--set", "cluster.storage.retention.maxMessages=-1"}, []string{"/cluster/storage/retention/maxMessages"}},
		{[]string{"--set", "cluster.storage.reserve=some"}, []string{"/cluster/storage/reserve"}},
		{[]string{"--set", "cluster.podTemplate.tolerations=x"}, []string{"/cluster/podTemplate/tolerations"}},
		{[]string{"--set", "cluster.enabled=true", "--set", "cluster.pdb.maxUnavailable=1", "--set", "cluster.pdb.minAvailable=50%"},
			[]string{"cluster.pdb: set maxUnavailable or minAvailable, not both"}},
		{[]string{"--set", "cluster.enabled=true", "--set", "cluster.podTemplate.labels.app\\.kubernetes\\.io/name=x"},
			[]string{"cluster.podTemplate.labels: app.kubernetes.io/name is the operator's"}},
		{[]string{"--set", "cluster.enabled=true", "--set", "cluster.podTemplate.annotations.chat\\.ringchat\\.io/config-hash=x"},
			[]string{"cluster.podTemplate.annotations: chat.ringchat.io/config-hash is the operator's"}},
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
	const crdNote = "crds.install=false: apply the ChatCluster CRD yourself"
	for _, tc := range []struct {
		args   []string
		want   []string
		absent []string
	}{
		{[]string{"--set", "cluster.enabled=true", "--set", "cluster.name=chat", "--set", "cluster.service.port=8088"},
			[]string{"port-forward svc/chat 8080:8088", "http://127.0.0.1:8080/", "get chatclusters", "helm test rel -n chat-system"},
			[]string{crdNote}},
		{nil, []string{"port-forward svc/<cluster> 8080:<service port>", "http://127.0.0.1:8080/", "get chatclusters"},
			[]string{crdNote, "helm test"}},
		{[]string{"--set", "crds.install=false"}, []string{crdNote, "config/crd/bases", "get deploy rel-ringchat-operator"}, nil},
		{[]string{"--set", "cluster.enabled=true", "--set", "tests.enabled=false"}, []string{"get chatclusters"}, []string{"helm test"}},
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
		for _, a := range tc.absent {
			if strings.Contains(out, a) {
				t.Errorf("NOTES.txt (%v) has %q:\n%s", tc.args, a, out)
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

// valueLeaves lists the leaves of values.yaml (empty maps and lists are
// leaves) with their kind: "map", "list" or "scalar".
func valueLeaves(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(obj); ok && len(m) > 0 {
			for k, sub := range m {
				walk(prefix+k+".", sub)
			}
			return
		}
		kind := "scalar"
		switch v.(type) {
		case obj:
			kind = "map"
		case []any:
			kind = "list"
		}
		out[strings.TrimSuffix(prefix, ".")] = kind
	}
	walk("", readYAML(t, "values.yaml"))
	return out
}

// TestReadmeDocumentsEveryValue fails when a leaf of values.yaml has no row in
// README.md's table, or a row names no value.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	leaves := valueLeaves(t)
	for key := range leaves {
		if !strings.Contains(string(readme), "| `"+key+"` |") {
			t.Errorf("README.md has no table row for value %s", key)
		}
	}
	rows := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(readme), -1)
	if len(rows) == 0 {
		t.Fatal("no value rows in README.md")
	}
	for _, r := range rows {
		if _, ok := leaves[r[1]]; !ok {
			t.Errorf("README.md documents %s, which is not a value of values.yaml", r[1])
		}
	}
}

// TestEveryValueIsSet fails when a value of values.yaml is set (away from
// its default) by none of the option sets the render tests assert on:
// each documented value has at least one rendering that checks its effect.
func TestEveryValueIsSet(t *testing.T) {
	var keys []string
	for name, args := range optionSets {
		for i := 0; i+1 < len(args); i += 2 {
			switch args[i] {
			case "--set", "--set-string", "--set-json":
			default:
				t.Fatalf("option set %s: unexpected %q (want --set, --set-string or --set-json pairs)", name, args[i])
			}
			k, _, _ := strings.Cut(args[i+1], "=")
			keys = append(keys, strings.ReplaceAll(k, `\.`, "."))
		}
	}
	for leaf, kind := range valueLeaves(t) {
		set := slices.ContainsFunc(keys, func(k string) bool {
			switch kind {
			case "map":
				return k == leaf || strings.HasPrefix(k, leaf+".")
			case "list":
				return k == leaf || strings.HasPrefix(k, leaf+"[")
			}
			return k == leaf
		})
		if !set {
			t.Errorf("no option set of chart_test.go sets %s: add it to allOptions (or a set of its own) and assert its effect", leaf)
		}
	}
}
