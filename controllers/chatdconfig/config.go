// Package chatdconfig is what the ringchat operator tells chatd: the
// command-line arguments of the chatd container (from the ChatCluster's spec
// alone), the ports and file paths they name, and the data and hash of the
// ConfigMap that shows them. Everything here is pure.
package chatdconfig

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

// Ports of the chatd pods, chatd's conventional ones (docs/configuration.md,
// "Addresses"), and their names in the pod's container ports and the
// Services' target ports.
const (
	HTTPPort   int32 = 8080
	GossipPort int32 = 7946
	RPCPort    int32 = 7947
	// AdminPort is chatd's admin listener (--admin-listen): the admin API,
	// /metrics and the probes, never on the client port.
	AdminPort int32 = 9090

	HTTPPortName      = "http"
	GossipTCPPortName = "gossip-tcp"
	GossipUDPPortName = "gossip-udp"
	RPCPortName       = "rpc"
	AdminPortName     = "admin"
)

// ContainerName is the name of the chatd container in the pods.
const ContainerName = "chatd"

// Files chatd reads, mounted into the pods.
const (
	// JWTMountDir holds the JWT secret or public key (one Secret key,
	// projected as a file with a fixed name).
	JWTMountDir = "/etc/chatd/jwt"
	// TLSMountDir holds spec.tls's Secret, whose tls.crt and tls.key chatd
	// serves (and reloads when the kubelet updates them).
	TLSMountDir = "/etc/chatd/tls"

	// JWTSecretFileName, JWTPublicKeyFileName and JWKSFileName are the file
	// names of the JWT key in JWTMountDir, whatever its key in the Secret (a
	// key such as ".." is a valid Secret key but not a file name).
	JWTSecretFileName    = "jwt-secret"
	JWTPublicKeyFileName = "jwt-public-key"
	JWKSFileName         = "jwks.json"

	// PeerTLSMountDir holds the peer TLS Secret: every pod's certificate
	// and key (<pod>.crt, <pod>.key) and the CA bundle (ca.crt). Each pod
	// names its own files through $(POD_NAME) in its arguments.
	PeerTLSMountDir = "/etc/chatd/peer"
	// PeerCAFileName is the CA bundle's file (and key) in the peer TLS
	// Secret.
	PeerCAFileName = "ca.crt"

	// GossipMountDir holds the gossip keyring (--gossip-keyring-file).
	GossipMountDir        = "/etc/chatd/gossip"
	GossipKeyringFileName = "keyring"

	// AdminMountDir holds the admin API's token (--admin-token-file).
	AdminMountDir      = "/etc/chatd/admin"
	AdminTokenFileName = "token"

	// APIMountDir holds the server API's keys (--api-key-file) when
	// spec.serverAPI is enabled.
	APIMountDir     = "/etc/chatd/api"
	APIKeysFileName = "keys"
	// HooksMountDir holds the hooks' signing secret (--hook-secret-file)
	// when spec.hooks.signingSecretRef is set.
	HooksMountDir      = "/etc/chatd/hooks"
	HookSecretFileName = "secret"

	// ClusterMountDir holds the cluster size (--expected-nodes-file),
	// projected from the ConfigMap so that it changes in running pods.
	ClusterMountDir       = "/etc/chatd/cluster"
	ExpectedNodesFileName = "expected-nodes"
)

// Environment variables of the container: POD_NAME and POD_IP, from the
// downward API, expanded by the kubelet in the arguments ($(POD_NAME)).
// No secret is ever passed in the environment or the arguments: chatd
// reads every secret from a file of a read-only Secret volume.
const (
	EnvPodName = "POD_NAME"
	EnvPodIP   = "POD_IP"
)

// PeerCertFileName and PeerKeyFileName are the file names (and the keys in
// the peer TLS Secret) of pod's certificate and key.
func PeerCertFileName(pod string) string { return pod + ".crt" }

// PeerKeyFileName: see PeerCertFileName.
func PeerKeyFileName(pod string) string { return pod + ".key" }

// Keys of the ConfigMap. The expected-nodes key is not part of the
// configuration hash: the pods read it at run time, and changing it must
// not roll them.
const (
	ArgsKey           = "chatd.args"
	SecretVersionsKey = "secret-versions"
	ExpectedNodesKey  = "expected-nodes"
)

// Config is the configuration of the chatd pods, computed from the spec
// alone (plus the cluster size and the versions of the Secrets chatd reads
// at start). It is what the ConfigMap shows and what its hash stands for.
type Config struct {
	Args []string
	// Data is the ConfigMap's data: the arguments one a line, the versions
	// (resourceVersions, never content) of the Secrets chatd reads only at
	// start, and the cluster size (ExpectedNodesKey).
	Data map[string]string
	// Hash is a digest of Data without the expected-nodes key; it is
	// annotated on the pod template so that every change of the
	// configuration rolls the pods, and a change of the cluster size does
	// not.
	Hash string
}

// Desired computes the chatd configuration of cc for pods that apply a
// cluster size of expectedNodes. secretVersions names the version of each
// Secret that chatd reads once at start (the JWT secret or public key: its
// name and resourceVersion, nothing derived from its content), so that
// rotating one rolls the pods; it may be empty.
func Desired(cc *chatv1alpha1.ChatCluster, expectedNodes int32, secretVersions []string) Config {
	args := Args(cc, expectedNodes)
	versions := slices.Clone(secretVersions)
	slices.Sort(versions)
	data := map[string]string{
		ArgsKey:           strings.Join(args, "\n") + "\n",
		SecretVersionsKey: strings.Join(versions, "\n"),
	}
	hash := HashData(data)
	data[ExpectedNodesKey] = itoa(expectedNodes) + "\n"
	return Config{Args: args, Data: data, Hash: hash}
}

// HashData is a digest of a ConfigMap's data (or of the keys chatd reads
// from a Secret), independent of map order.
func HashData(data map[string]string) string {
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

// JoinAddress is chatd --join: the headless Service's DNS name, which
// resolves to every pod's IP, ready or not (publishNotReadyAddresses).
func JoinAddress(cc *chatv1alpha1.ChatCluster) string {
	return fmt.Sprintf("%s.%s.svc:%d", cc.HeadlessServiceName(), cc.Namespace, GossipPort)
}

// Args are the command-line arguments of the chatd container, in a fixed
// order, for pods that apply a cluster size of expectedNodes. Flags win over
// the CHATD_ variables of spec.podTemplate.env, so what the spec models
// cannot be overridden by accident.
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
func Args(cc *chatv1alpha1.ChatCluster, expectedNodes int32) []string {
	a := []string{
		fmt.Sprintf("--listen=0.0.0.0:%d", HTTPPort),
		"--node-name=$(" + EnvPodName + ")",
		fmt.Sprintf("--gossip-addr=0.0.0.0:%d", GossipPort),
		fmt.Sprintf("--gossip-advertise-addr=$(%s):%d", EnvPodIP, GossipPort),
		fmt.Sprintf("--rpc-addr=0.0.0.0:%d", RPCPort),
		fmt.Sprintf("--rpc-advertise-addr=$(%s):%d", EnvPodIP, RPCPort),
		"--join=" + JoinAddress(cc),
	}
	if expectedNodes == 1 {
		a = append(a, "--bootstrap")
	}
	a = append(a,
		"--cluster-label="+cc.ClusterLabel(),
		"--peer-tls-cert-file="+path.Join(PeerTLSMountDir, PeerCertFileName("$("+EnvPodName+")")),
		"--peer-tls-key-file="+path.Join(PeerTLSMountDir, PeerKeyFileName("$("+EnvPodName+")")),
		"--peer-tls-ca-file="+path.Join(PeerTLSMountDir, PeerCAFileName),
		"--gossip-keyring-file="+path.Join(GossipMountDir, GossipKeyringFileName),
		fmt.Sprintf("--admin-listen=0.0.0.0:%d", AdminPort),
		"--admin-token-file="+path.Join(AdminMountDir, AdminTokenFileName),
		"--expected-nodes-file="+path.Join(ClusterMountDir, ExpectedNodesFileName),
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
		a = append(a, "--jwt-secret-file="+path.Join(JWTMountDir, JWTSecretFileName))
	case auth.JWTPublicKeySecretRef != nil:
		a = append(a, "--jwt-public-key-file="+path.Join(JWTMountDir, JWTPublicKeyFileName))
	case auth.JWKSSecretRef != nil:
		a = append(a, "--jwt-jwks-file="+path.Join(JWTMountDir, JWKSFileName))
	}
	if cc.Spec.TLS != nil {
		a = append(a,
			"--tls-cert-file="+path.Join(TLSMountDir, corev1.TLSCertKey),
			"--tls-key-file="+path.Join(TLSMountDir, corev1.TLSPrivateKeyKey))
	}
	if auth.Issuer != "" {
		a = append(a, "--jwt-issuer="+auth.Issuer)
	}
	if auth.Audience != "" {
		a = append(a, "--jwt-audience="+auth.Audience)
	}
	a = append(a, StorageArgs(cc.Spec.Storage)...)
	a = append(a, cc.Spec.Limits.Args()...)
	if cc.ServerAPIEnabled() {
		a = append(a, "--api-key-file="+path.Join(APIMountDir, APIKeysFileName))
	}
	a = append(a, cc.Spec.Hooks.Args(path.Join(HooksMountDir, HookSecretFileName))...)
	return append(a, cc.Spec.SocketIO.Args()...)
}

// StorageArgs are chatd's storage flags for spec.storage: the data
// directory on the pod's volume, retention and reserve. None without
// storage (chatd then keeps history in memory only).
func StorageArgs(s *chatv1alpha1.StorageSpec) []string {
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
