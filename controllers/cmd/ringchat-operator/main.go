// Command ringchat-operator runs the ChatCluster controller: it turns each
// ChatCluster (chat.ringchat.io/v1alpha1) into a StatefulSet of chatd nodes
// with its Services, configuration, gossip Secret and PodDisruptionBudget.
//
// Usage:
//
//	ringchat-operator [--leader-elect] [--metrics-bind-address :8080]
//	                  [--health-probe-bind-address :8081] [--log-level info]
//
// Logs are JSON lines on stderr (log/slog).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/chatd/version"
	"github.com/ringchat/ringchat/controllers"
)

// leaderElectionID names the Lease that elects the active replica.
const leaderElectionID = "ringchat-operator.chat.ringchat.io"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	metricsAddr       string
	probeAddr         string
	leaderElect       bool
	leaderElectionNS  string
	logLevel          string
	printVersion      bool
	controllerWorkers int
	sizePropagation   time.Duration
	clusterConfigMap  string
	operatorNS        string

	// Derived from the flags by parseFlags.
	level                      slog.Level
	clusterCMNS, clusterCMName string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ringchat-operator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (\"0\" disables it)")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect one active replica through a Lease (enable when running more than one)")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.IntVar(&o.controllerWorkers, "workers", 2, "ChatClusters reconciled concurrently")
	fs.DurationVar(&o.sizePropagation, "cluster-size-propagation", controllers.DefaultSizePropagation, "how long a changed cluster size takes at most to reach a chatd pod through its mounted ConfigMap when the operator cannot ask the pod (the kubelet's sync period plus margin); a scaling step starts as soon as every pod reports the new size, and after this long at the latest")
	fs.StringVar(&o.clusterConfigMap, "cluster-from-configmap", "", "namespace/name of a ConfigMap whose \"chatcluster.yaml\" the operator applies as a ChatCluster, at start and whenever it changes (the Helm chart's cluster.enabled)")
	fs.StringVar(&o.operatorNS, "operator-namespace", "", "namespace the operator runs in, whose pods the chatd pods' NetworkPolicy lets reach their admin listeners (/metrics, read while scaling); empty: none")
	fs.BoolVar(&o.printVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := o.level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return o, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", o.logLevel)
	}
	if o.sizePropagation < 0 {
		return o, fmt.Errorf("--cluster-size-propagation must not be negative, got %s", o.sizePropagation)
	}
	if o.clusterConfigMap != "" {
		ns, name, ok := strings.Cut(o.clusterConfigMap, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return o, fmt.Errorf("--cluster-from-configmap must be namespace/name, got %q", o.clusterConfigMap)
		}
		o.clusterCMNS, o.clusterCMName = ns, name
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ringchat-operator:", err)
		return 2
	}
	if o.printVersion {
		fmt.Fprintln(stdout, "ringchat-operator", version.Version)
		return 0
	}
	logger := logr.FromSlogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.level}))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger) // client-go's own logs (leader election, watches)
	setupLog := logger.WithName("setup")

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		setupLog.Error(err, "building the scheme")
		return 1
	}
	if err := chatv1alpha1.AddToScheme(scheme); err != nil {
		setupLog.Error(err, "building the scheme")
		return 1
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		setupLog.Error(err, "no Kubernetes configuration (in-cluster, KUBECONFIG or ~/.kube/config)")
		return 1
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Client:                        controllers.ClientOptions(),
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true, // the process exits right after the manager stops
	})
	if err != nil {
		setupLog.Error(err, "creating the manager")
		return 1
	}
	r := &controllers.ChatClusterReconciler{
		Client:   mgr.GetClient(),
		Scheme:   mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("ringchat-operator"),

		SizePropagation:   o.sizePropagation,
		OperatorNamespace: o.operatorNS,
	}
	if err := r.SetupWithManager(mgr, o.controllerWorkers); err != nil {
		setupLog.Error(err, "setting up the ChatCluster controller")
		return 1
	}
	if o.clusterConfigMap != "" {
		a := &controllers.ConfigMapApplier{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: o.clusterCMNS, Name: o.clusterCMName}
		if err := a.SetupWithManager(mgr); err != nil {
			setupLog.Error(err, "adding the ConfigMap applier")
			return 1
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "adding the health check")
		return 1
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "adding the readiness check")
		return 1
	}

	if o.operatorNS == "" {
		setupLog.Info("no --operator-namespace: the chatd pods' NetworkPolicies will not let the operator read their /metrics, and scaling steps then wait --cluster-size-propagation")
	}
	setupLog.Info("starting", "version", version.Version, "leaderElection", o.leaderElect, "operatorNamespace", o.operatorNS)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "manager stopped")
		return 1
	}
	return 0
}
