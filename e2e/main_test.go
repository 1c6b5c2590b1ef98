//go:build e2e

// Package e2e runs ringchat end to end on a real Kubernetes cluster (kind):
// the operator installed from the Helm chart, a ChatCluster of three chatd
// pods, and real WebSocket clients on the test host that reach the pods
// through port-forwards (a client on a given pod, the admin API) and through
// the client Service's NodePort (traffic that must survive pods going away).
//
// The scripts under hack/ build the images, create the kind cluster, install
// the chart and apply the ChatCluster; this suite only reads the environment
// they describe (see e2e/README.md, "Go suite"):
//
//	KUBECONFIG      the kind cluster's kubeconfig (required)
//	E2E_NAMESPACE   namespace of the ChatCluster (default ringchat-e2e)
//	E2E_CLUSTER     name of the ChatCluster (default chat)
//	E2E_PREVIOUS_IMAGE    the previous release's chatd image, loaded into
//	                      the nodes (required by TestRollingUpgrade)
//	E2E_PREVIOUS_RELEASE  that release's name (hack/previous-release); empty
//	                      when the clone lacked its history and the image is
//	                      the working tree's under another tag
//	E2E_CHATCTL_IMAGE     the chatctl image, loaded into the nodes (the
//	                      event stream's backend pod runs `chatctl sink`;
//	                      required by TestEventStreamToBackendPod)
//
// Without its cluster the run fails: it is never skipped. The tests run in
// source order, change the cluster (scale, delete a pod, upgrade, roll) and
// put it back as they found it: three ready replicas, the original image and
// configuration.
package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
)

// Defaults of the environment variables the scripts may leave out.
const (
	defaultNamespace = "ringchat-e2e"
	defaultCluster   = "chat"
)

// minTimeout is the go test -timeout the whole suite needs: rollouts of
// three to five pods that each drain before stopping take minutes apiece on
// a small machine, and the suite does eleven of them (the storage tests add
// three: every pod deleted at once, and a scale up and down).
const minTimeout = 40 * time.Minute

// environment is what the suite knows about the cluster under test. It is
// read once, in TestMain, and shared (read-only) by every test.
type environment struct {
	rest      *rest.Config
	client    client.Client                // typed client with the ChatCluster scheme; reads go to the API server
	clientset kubernetes.Interface         // for the port-forward subresource
	namespace string                       // E2E_NAMESPACE
	name      string                       // E2E_CLUSTER
	previous  string                       // E2E_PREVIOUS_IMAGE, possibly empty
	release   string                       // E2E_PREVIOUS_RELEASE, possibly empty
	chatctl   string                       // E2E_CHATCTL_IMAGE, possibly empty
	original  chatv1alpha1.ChatClusterSpec // the spec as the suite found it, restored after each test
}

// env is the environment of the run, set by TestMain before any test runs.
var env *environment

func TestMain(m *testing.M) {
	flag.Parse()
	// client-go's port-forwarder reports every connection a pod drops (the
	// suite deletes and rolls pods on purpose) through klog, and
	// controller-runtime complains when no logger is set; failures reach
	// the tests as errors anyway.
	klog.SetLogger(logr.Discard())
	ctrllog.SetLogger(logr.Discard())

	e, err := newEnvironment()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: %v\n", err)
		os.Exit(1)
	}
	env = e
	warnShortTimeout()
	os.Exit(m.Run())
}

// warnShortTimeout warns when go test's -timeout (10 minutes unless set)
// is shorter than the whole suite may need: the binary would panic in the
// middle of a rollout, leaving the ChatCluster changed for the next run.
func warnShortTimeout() {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return
	}
	if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 && d < minTimeout {
		fmt.Fprintf(os.Stderr, "e2e: warning: -timeout %v is shorter than the %v the whole suite may need\n", d, minTimeout)
	}
}

// newEnvironment reads the environment variables, connects to the cluster
// and checks that the ChatCluster the scripts applied is there, so that a
// missing cluster fails the run once, clearly, instead of every test.
func newEnvironment() (*environment, error) {
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		return nil, errors.New("KUBECONFIG is not set: this suite runs against a kind cluster " +
			"that the e2e scripts create (the chart installed, the ChatCluster applied); see e2e/README.md")
	}
	for _, path := range filepath.SplitList(kubeconfig) {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("KUBECONFIG: %w", err)
		}
	}
	// The standard loading rules: KUBECONFIG may list several files.
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading KUBECONFIG=%s: %w", kubeconfig, err)
	}
	// The suite polls several objects every couple of seconds and opens a
	// port-forward per admin query: more than client-go's default 5 QPS.
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Timeout = 30 * time.Second

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(chatv1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the API client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the clientset: %w", err)
	}
	e := &environment{
		rest:      cfg,
		client:    c,
		clientset: cs,
		namespace: getenv("E2E_NAMESPACE", defaultNamespace),
		name:      getenv("E2E_CLUSTER", defaultCluster),
		previous:  os.Getenv("E2E_PREVIOUS_IMAGE"),
		release:   os.Getenv("E2E_PREVIOUS_RELEASE"),
		chatctl:   os.Getenv("E2E_CHATCTL_IMAGE"),
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cc, err := e.chatCluster(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (the e2e scripts apply it before running the suite; E2E_NAMESPACE and E2E_CLUSTER name it)", err)
	}
	e.original = *cc.Spec.DeepCopy()
	return e, nil
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// chatCluster reads the ChatCluster under test from the API server.
func (e *environment) chatCluster(ctx context.Context) (*chatv1alpha1.ChatCluster, error) {
	cc := &chatv1alpha1.ChatCluster{}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: e.name}, cc); err != nil {
		return nil, fmt.Errorf("getting ChatCluster %s/%s: %w", e.namespace, e.name, err)
	}
	return cc, nil
}

// statefulSet finds the StatefulSet the operator runs for cc: the one in
// its namespace that cc controls (the suite does not assume its name).
func (e *environment) statefulSet(ctx context.Context, cc *chatv1alpha1.ChatCluster) (*appsv1.StatefulSet, error) {
	var list appsv1.StatefulSetList
	if err := e.client.List(ctx, &list, client.InNamespace(e.namespace)); err != nil {
		return nil, fmt.Errorf("listing StatefulSets: %w", err)
	}
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], cc) {
			return &list.Items[i], nil
		}
	}
	return nil, fmt.Errorf("no StatefulSet in %s is controlled by ChatCluster %s", e.namespace, cc.Name)
}
