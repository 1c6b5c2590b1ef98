package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

// Ports and paths of the chatd pods. The ports are chatd's conventional ones
// (docs/configuration.md, "Addresses").
const (
	httpPort   int32 = 8080
	gossipPort int32 = 7946
	rpcPort    int32 = 7947

	httpPortName      = "http"
	gossipTCPPortName = "gossip-tcp"
	gossipUDPPortName = "gossip-udp"
	rpcPortName       = "rpc"

	containerName = "chatd"

	// jwtMountDir holds the JWT secret or public key (one Secret key,
	// projected as a file of the same name).
	jwtMountDir = "/etc/chatd/jwt"
	// tlsMountDir holds spec.tls's Secret, whose tls.crt and tls.key chatd
	// serves (and reloads when the kubelet updates them).
	tlsMountDir = "/etc/chatd/tls"

	jwtSecretFileName    = "jwt-secret"
	jwtPublicKeyFileName = "jwt-public-key"

	// clusterMountDir holds the cluster size (--expected-nodes-file),
	// projected from the ConfigMap so that it changes in running pods.
	clusterMountDir       = "/etc/chatd/cluster"
	expectedNodesFileName = "expected-nodes"

	jwtVolumeName     = "jwt"
	tlsVolumeName     = "tls"
	clusterVolumeName = "cluster"

	// Environment variables of the container. POD_NAME and POD_IP come from
	// the downward API and are expanded by the kubelet in the arguments
	// ($(POD_NAME)); the two secrets are read by chatd from its environment
	// (docs/configuration.md, "Secrets and keys") so that they never appear
	// in the process list.
	envPodName       = "POD_NAME"
	envPodIP         = "POD_IP"
	envClusterSecret = "CHATD_CLUSTER_SECRET"
	envGossipKey     = "CHATD_GOSSIP_KEY"

	// Keys of the ConfigMap. The expected-nodes key is not part of the
	// configuration hash: the pods read it at run time, and changing it must
	// not roll them.
	configMapArgsKey          = "chatd.args"
	configMapSecretsKey       = "secret-versions"
	configMapExpectedNodesKey = "expected-nodes"
)

// replicaPlan is what the StatefulSet runs now: its replicas and the cluster
// size its pods apply (the ConfigMap's expected-nodes key, which they read as
// --expected-nodes-file). It differs from spec.replicas only while the
// operator scales down one node at a time (see planReplicas).
type replicaPlan struct {
	Replicas      int32
	ExpectedNodes int32
}

// chatdConfig is the configuration of the chatd pods, computed from the spec
// alone (plus the replica plan and the versions of the Secrets chatd reads at
// start). It is what the ConfigMap shows and what its hash stands for.
type chatdConfig struct {
	Args []string
	// Data is the ConfigMap's data: the arguments one a line, and the
	// versions of the Secrets whose content chatd reads only at start.
	Data map[string]string
	// Hash is a digest of Data without the expected-nodes key; it is
	// annotated on the pod template so that every change of the
	// configuration rolls the pods, and a change of the cluster size does
	// not.
	Hash string
}

// desiredConfig computes the chatd configuration of cc. secretVersions names
// the version of each Secret that chatd reads once at start (the JWT secret or
// public key), so that rotating one rolls the pods; it may be empty.
func desiredConfig(cc *chatv1alpha1.ChatCluster, plan replicaPlan, secretVersions []string) chatdConfig {
	args := chatdArgs(cc, plan)
	versions := slices.Clone(secretVersions)
	slices.Sort(versions)
	data := map[string]string{
		configMapArgsKey:    strings.Join(args, "\n") + "\n",
		configMapSecretsKey: strings.Join(versions, "\n"),
	}
	hash := hashData(data)
	data[configMapExpectedNodesKey] = itoa(plan.ExpectedNodes) + "\n"
	return chatdConfig{Args: args, Data: data, Hash: hash}
}

// hashData is a digest of a ConfigMap's data (or of the keys chatd reads
// from a Secret, see secretVersion), independent of map order.
func hashData(data map[string]string) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		// Length-prefixed, so that no two different maps hash alike.
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(data[k]), data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// joinAddress is chatd --join: the headless Service's DNS name, which
// resolves to every pod's IP, ready or not (publishNotReadyAddresses).
func joinAddress(cc *chatv1alpha1.ChatCluster) string {
	return fmt.Sprintf("%s.%s.svc:%d", cc.HeadlessServiceName(), cc.Namespace, gossipPort)
}

// chatdArgs are the command-line arguments of the chatd container, in a
// fixed order. Flags win over the CHATD_ variables of spec.podTemplate.env,
// so what the spec models cannot be overridden by accident.
//
// Bootstrap. A chatd started with --join waits (not ready) until a seed
// answers, and a node whose seeds resolve only to itself waits too; with
// --bootstrap it would instead start a cluster alone when the first join
// attempt finds nobody. The pods start together (podManagementPolicy
// Parallel) and find each other through the headless Service, which lists
// them before they are ready, so a cluster of two or more forms without any
// node bootstrapping: the first two pods that see each other join, the others
// join them. --bootstrap is therefore passed only when the cluster is meant
// to be a single node (expected nodes 1), whose seeds can only ever resolve
// to itself.
//
// Why not --bootstrap everywhere: a pod that restarts while DNS or the network
// misbehaves would start a one-node cluster of its own, report ready and take
// clients while, being a minority of --expected-nodes, it refuses their
// messages, until the rejoin loop merges it (up to --rejoin-interval, 30 s).
// Without it such a pod stays not ready and says why in /readyz, which is the
// honest signal. And the StatefulSet cannot give only ordinal 0 the flag: the
// image has no shell to compute it, and the pod-index label maps pod 0 to
// "0", which chatd reads as false. The cost of this choice: a cluster of two
// or more whose pods cannot reach each other at all (a NetworkPolicy, a
// wrong gossip key) never becomes ready instead of splitting into singletons;
// that is what should happen.
func chatdArgs(cc *chatv1alpha1.ChatCluster, plan replicaPlan) []string {
	a := []string{
		fmt.Sprintf("--listen=0.0.0.0:%d", httpPort),
		"--node-name=$(" + envPodName + ")",
		fmt.Sprintf("--gossip-addr=0.0.0.0:%d", gossipPort),
		fmt.Sprintf("--gossip-advertise-addr=$(%s):%d", envPodIP, gossipPort),
		fmt.Sprintf("--rpc-addr=0.0.0.0:%d", rpcPort),
		fmt.Sprintf("--rpc-advertise-addr=$(%s):%d", envPodIP, rpcPort),
		"--join=" + joinAddress(cc),
	}
	if plan.ExpectedNodes == 1 {
		a = append(a, "--bootstrap")
	}
	a = append(a,
		"--cluster-label="+cc.ClusterLabel(),
		"--expected-nodes-file="+path.Join(clusterMountDir, expectedNodesFileName),
		"--replication-factor="+itoa(cc.ReplicationFactor()),
		"--history-size="+itoa(cc.HistorySize()),
		"--send-queue="+itoa(cc.SendQueue()),
		"--drain-timeout="+cc.DrainTimeout().String(),
		"--shutdown-timeout="+cc.ShutdownTimeout().String(),
		"--allow-anonymous="+strconv.FormatBool(cc.Spec.Auth.AllowAnonymous),
	)
	auth := cc.Spec.Auth
	switch {
	case auth.JWTSecretRef != nil:
		a = append(a, "--jwt-secret-file="+path.Join(jwtMountDir, jwtSecretFileName))
	case auth.JWTPublicKeySecretRef != nil:
		a = append(a, "--jwt-public-key-file="+path.Join(jwtMountDir, jwtPublicKeyFileName))
	}
	if cc.Spec.TLS != nil {
		a = append(a,
			"--tls-cert-file="+path.Join(tlsMountDir, corev1.TLSCertKey),
			"--tls-key-file="+path.Join(tlsMountDir, corev1.TLSPrivateKeyKey))
	}
	if auth.Issuer != "" {
		a = append(a, "--jwt-issuer="+auth.Issuer)
	}
	if auth.Audience != "" {
		a = append(a, "--jwt-audience="+auth.Audience)
	}
	a = append(a, storageArgs(cc.Spec.Storage)...)
	return append(a, cc.Spec.Limits.Args()...)
}

// storageArgs are chatd's storage flags for spec.storage: the data
// directory on the pod's volume, retention and reserve. None without
// storage (chatd then keeps history in memory only).
func storageArgs(s *chatv1alpha1.StorageSpec) []string {
	if s == nil {
		return nil
	}
	return []string{
		"--data-dir=" + chatv1alpha1.DataMountPath,
		"--history-retention=" + s.Retention.MaxAgeOrDefault().String(),
		"--history-max-messages=" + strconv.FormatInt(s.Retention.MaxMessagesOrDefault(), 10),
		"--storage-reserve-bytes=" + strconv.FormatInt(s.ReserveBytes(), 10),
	}
}

func itoa(v int32) string { return strconv.FormatInt(int64(v), 10) }
