package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ChatClusterSpec is the desired state of a ChatCluster: how many chatd nodes
// to run, how clients authenticate, how the nodes find and trust each other,
// and how the cluster is exposed.
//
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas == 0 || !has(self.replicationFactor) || self.replicationFactor <= self.replicas",message="replicationFactor cannot exceed replicas",fieldPath=".replicationFactor"
// +kubebuilder:validation:XValidation:rule="has(self.storage) == has(oldSelf.storage)",message="storage cannot be added to or removed from an existing ChatCluster: a StatefulSet's volume claims are fixed when it is created; create a new ChatCluster instead",fieldPath=".storage"
// +kubebuilder:validation:XValidation:rule="has(self.auth.jwtSecretRef) || has(self.auth.jwtPublicKeySecretRef) || has(self.auth.jwksSecretRef) || (has(self.auth.allowAnonymous) && self.auth.allowAnonymous) || (has(self.hooks) && has(self.hooks.connect))",message="no way to authenticate: set jwtSecretRef, jwtPublicKeySecretRef, jwksSecretRef or allowAnonymous (or a connect hook in spec.hooks)",fieldPath=".auth"
type ChatClusterSpec struct {
	// Number of chatd nodes (pods). Each room is owned by one node and stored
	// on replicationFactor nodes, so replicas must be at least
	// replicationFactor unless it is 0. 0 stops the cluster: without storage
	// its rooms and history go with it (chatd keeps them in memory); with
	// storage the volumes are kept and the history comes back with the pods.
	// The operator scales one node at a time so rooms move without losing
	// acknowledged messages; a node scaled away hands its rooms off before
	// its volume is deleted. Also set through the scale subresource (kubectl
	// scale, HorizontalPodAutoscaler).
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Container image of chatd.
	// +kubebuilder:default="ringchat/chatd:dev"
	// +kubebuilder:validation:MinLength=1
	// +optional
	Image string `json:"image,omitempty"`

	// When the kubelet pulls the image: Always, Never or IfNotPresent.
	// +kubebuilder:default=IfNotPresent
	// +kubebuilder:validation:Enum=Always;Never;IfNotPresent
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// CPU and memory requests and limits of the chatd container. Empty means
	// none. chatd keeps every room's recent history in memory, so size the
	// memory for the rooms a node owns and replicates.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// How clients authenticate in their hello frame: a JWT signed with a
	// shared secret (HS256) or verified with a public key (RS256/ES256), or,
	// for development only, just a name.
	// +required
	Auth AuthSpec `json:"auth"`

	// How chatd nodes find and trust each other over gossip: the gossip
	// keyring and the cluster label that keeps two clusters from merging.
	// +kubebuilder:default={}
	// +optional
	Gossip GossipSpec `json:"gossip,omitempty"`

	// Messages kept per room, in memory, for resume after a reconnect and for
	// history paging (chatd --history-size). With storage this is the
	// in-memory part of a room's history; older messages are read from the
	// volume, within storage.retention.
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=100000
	// +optional
	HistorySize int32 `json:"historySize,omitempty"`

	// Nodes that store a message before it is acknowledged, the room's owner
	// included (chatd --replication-factor). With R, an acknowledged message
	// survives the loss of R-1 nodes. Cannot exceed replicas.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5
	// +optional
	ReplicationFactor int32 `json:"replicationFactor,omitempty"`

	// The Service that clients connect to (WebSocket at /ws, the web page at /).
	// +kubebuilder:default={}
	// +optional
	Service ServiceSpec `json:"service,omitempty"`

	// TLS certificate for serving https:// and wss:// directly from the pods
	// (chatd --tls-cert-file/--tls-key-file), end to end. Without it the pods
	// serve plain HTTP; terminate TLS at an Ingress, Gateway or load balancer
	// in front of the Service then.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// Longest a stopping node spends handing the rooms it owns to other nodes,
	// the first phase of its shutdown (chatd --drain-timeout); it ends sooner
	// when the handoff is done. The pod's terminationGracePeriodSeconds covers
	// drainTimeout + shutdownTimeout and a margin. Between 1s and 1h.
	// +kubebuilder:default="25s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('1h'))",message="drainTimeout must be between 1s and 1h"
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`

	// Longest a stopping node spends, after the handoff, closing its client
	// connections with 1012 (paced) so clients reconnect to other nodes and
	// resume (chatd --shutdown-timeout). Between 1s and 1h.
	// +kubebuilder:default="20s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('1h'))",message="shutdownTimeout must be between 1s and 1h"
	// +optional
	ShutdownTimeout *metav1.Duration `json:"shutdownTimeout,omitempty"`

	// Additions to the chatd pods: labels, annotations, scheduling and
	// environment.
	// +optional
	PodTemplate *PodTemplateOverrides `json:"podTemplate,omitempty"`

	// The PodDisruptionBudget of the chatd pods, which limits voluntary
	// evictions (node drains, cluster upgrades). Set maxUnavailable or
	// minAvailable, not both; when neither is set the budget allows one
	// unavailable pod (maxUnavailable 1).
	// +optional
	PodDisruptionBudget *PodDisruptionBudgetSpec `json:"podDisruptionBudget,omitempty"`

	// Per-node and per-connection limits. Each field left out keeps chatd's
	// default.
	// +optional
	Limits *LimitsSpec `json:"limits,omitempty"`

	// The Socket.IO endpoint at /socket.io/ on the client port (Engine.IO 4,
	// Socket.IO 5; docs/socketio.md): whether it is served, its namespaces
	// and who may enter them, connection state recovery and the heartbeat.
	// Left out, chatd's defaults apply: served, the namespace "/" only,
	// recovery within 2m, a 20s ping timeout.
	// +optional
	SocketIO *SocketIOSpec `json:"socketIO,omitempty"`

	// The server API for the application's backend (/api/v1/ on the admin
	// port, docs/api.md): publish into rooms, broadcast, read history.
	// Left out, it is off.
	// +optional
	ServerAPI *ServerAPISpec `json:"serverAPI,omitempty"`

	// Backend hooks (docs/api.md#hooks): HTTP calls from every chatd pod to
	// the application's backend that decide who connects (connect: an
	// identity from a cookie instead of a JWT), who joins a room (join) and
	// what is sent (send: allow, refuse or rewrite). Left out, there are
	// none. Changing them restarts the pods one at a time.
	// +optional
	Hooks *HooksSpec `json:"hooks,omitempty"`

	// Durable history: each chatd pod gets a PersistentVolumeClaim and keeps
	// every room it owns or replicates on it (chatd --data-dir), so history
	// survives restarts, idle rooms and the loss of every pod at once. Left
	// out, the cluster is memory-only: each room keeps its last historySize
	// messages in the memory of its owner and replicas, and loses them when
	// they all stop. Cannot be added to or removed from an existing
	// ChatCluster.
	// +optional
	Storage *StorageSpec `json:"storage,omitempty"`

	// The inter-node transport's mutual TLS: the operator runs a CA per
	// ChatCluster (a Secret it owns) and issues every pod a certificate
	// naming the pod, renewed before it expires without restarting anything
	// (chatd re-reads the files). See docs/security.md.
	// +kubebuilder:default={}
	// +optional
	PeerTLS PeerTLSSpec `json:"peerTLS,omitempty"`

	// The NetworkPolicy of the chatd pods: the client port from anywhere
	// (or from clientFrom), gossip and the inter-node transport only from
	// this ChatCluster's own pods, the admin listener (admin API, /metrics)
	// only from the operator's namespace and adminFromNamespaces. On by
	// default. It is enforced only when the cluster's network plugin
	// enforces NetworkPolicy.
	// +kubebuilder:default={}
	// +optional
	NetworkPolicy NetworkPolicySpec `json:"networkPolicy,omitempty"`
}

// PeerTLSSpec is the lifetime of the pods' inter-node certificates.
//
// +kubebuilder:validation:XValidation:rule="!has(self.certificateDuration) || !has(self.renewBefore) || duration(self.renewBefore) < duration(self.certificateDuration)",message="peerTLS.renewBefore must be shorter than peerTLS.certificateDuration",fieldPath=".renewBefore"
type PeerTLSSpec struct {
	// How long each pod's certificate is valid. Default 90 days
	// (2160h); at least 1h.
	// +kubebuilder:default="2160h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="peerTLS.certificateDuration must be at least 1h"
	// +optional
	CertificateDuration *metav1.Duration `json:"certificateDuration,omitempty"`

	// How long before its expiry a certificate is replaced by a new one.
	// Default 30 days (720h); at least 10m, so that the kubelet has the
	// time to bring the new files to the pod (about a minute) and chatd to
	// read them (--cluster-reload-interval, 10 s).
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m')",message="peerTLS.renewBefore must be at least 10m"
	// +optional
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// NetworkPolicySpec shapes the NetworkPolicy of the chatd pods.
type NetworkPolicySpec struct {
	// Whether the operator creates the NetworkPolicy (<name>-chatd). Turned
	// off, an existing one is left as it is (delete it by hand).
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Who may reach the client port (WebSocket, the web page, the probes).
	// Empty: anyone. Otherwise only these peers (pod and namespace
	// selectors, IP blocks), as in a NetworkPolicy rule; remember the
	// ingress controller or load balancer, and, with some network plugins,
	// the nodes (the kubelet's probes).
	// +kubebuilder:validation:MaxItems=32
	// +optional
	ClientFrom []networkingv1.NetworkPolicyPeer `json:"clientFrom,omitempty"`

	// Namespaces whose pods may reach the admin listener (admin API and
	// /metrics), besides the operator's own namespace, which always may
	// (the operator reads each pod's /metrics while scaling). Left out:
	// only the operator's namespace. An empty selector ({}) allows every
	// namespace. Typically the namespace of Prometheus.
	// +optional
	AdminFromNamespaces *metav1.LabelSelector `json:"adminFromNamespaces,omitempty"`
}

// StorageSpec is the volume of each chatd pod and what chatd keeps on it.
//
// The volumes (PersistentVolumeClaims named data-<name>-<ordinal>, labelled
// with the pods' selector labels) are kept when the ChatCluster is deleted,
// and when it is scaled to 0; a pod removed by a scale-down hands its rooms
// off before it stops, and its volume is deleted once the pod is gone.
//
// +kubebuilder:validation:XValidation:rule="!isQuantity(string(self.size)) || !isQuantity(string(oldSelf.size)) || quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0",message="storage.size cannot shrink: a volume can only grow",fieldPath=".size"
// +kubebuilder:validation:XValidation:rule="has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",message="storage.storageClassName is immutable: the volumes exist already; create a new ChatCluster to use another class",fieldPath=".storageClassName"
// +kubebuilder:validation:XValidation:rule="!has(self.reserve) || !isQuantity(string(self.size)) || !isQuantity(string(self.reserve)) || quantity(string(self.reserve)).compareTo(quantity(string(self.size))) < 0",message="storage.reserve must be less than storage.size: chatd refuses every new message while its free space is below the reserve",fieldPath=".reserve"
type StorageSpec struct {
	// Capacity requested for each pod's volume, such as "10Gi"; at least
	// 64Mi. It can grow, never shrink: the operator then asks each existing
	// volume for the new size, which needs a StorageClass with
	// allowVolumeExpansion (status.storage shows the smallest capacity the
	// volumes have).
	// +kubebuilder:validation:XValidation:rule="!isQuantity(string(self)) || quantity(string(self)).compareTo(quantity('64Mi')) >= 0",message="storage.size must be at least 64Mi"
	// +required
	Size resource.Quantity `json:"size"`

	// StorageClass of the volumes. Left out, the Kubernetes cluster's
	// default StorageClass. Immutable.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	StorageClassName string `json:"storageClassName,omitempty"`

	// How long and how much history each room keeps on disk; compaction
	// removes what falls outside.
	// +kubebuilder:default={}
	// +optional
	Retention RetentionSpec `json:"retention,omitempty"`

	// Free space chatd keeps on its volume (chatd --storage-reserve-bytes):
	// below it, new messages are refused with the protocol error
	// storage_full while joins, history and resumes go on. Must be less than
	// size. Left out: a quarter of size, at most 256Mi.
	// +optional
	Reserve *resource.Quantity `json:"reserve,omitempty"`
}

// RetentionSpec bounds each room's stored history by age and by count; a
// message is removed as soon as it falls outside either bound.
type RetentionSpec struct {
	// Messages older than this are removed (chatd --history-retention),
	// such as "720h" (30 days, the default); "0s" keeps them for ever.
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`

	// The newest messages kept per room (chatd --history-max-messages);
	// 0, the default, means no count limit.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxMessages *int64 `json:"maxMessages,omitempty"`
}

// AuthSpec says how clients authenticate.
//
// +kubebuilder:validation:XValidation:rule="[has(self.jwtSecretRef), has(self.jwtPublicKeySecretRef), has(self.jwksSecretRef)].filter(x, x).size() <= 1",message="set one of jwtSecretRef, jwtPublicKeySecretRef and jwksSecretRef, not several"
type AuthSpec struct {
	// Secret key holding the HS256 shared secret that signs clients' tokens
	// (at least 32 bytes; surrounding whitespace is trimmed). Mounted as a
	// file (chatd --jwt-secret-file).
	// +optional
	JWTSecretRef *JWTSecretKeySelector `json:"jwtSecretRef,omitempty"`

	// Secret key holding a PEM public key that verifies clients' tokens: RSA
	// of at least 2048 bits (RS256) or ECDSA P-256 (ES256). Mounted as a file
	// (chatd --jwt-public-key-file).
	// +optional
	JWTPublicKeySecretRef *JWTPublicKeySelector `json:"jwtPublicKeySecretRef,omitempty"`

	// Secret key holding a JSON Web Key Set: the keys that verify clients'
	// tokens, named by "kid", so that keys rotate without a restart (chatd
	// --jwt-jwks-file re-reads the file; a token without a kid is accepted
	// only while the set holds exactly one key). Mounted as a file; edit the
	// Secret to rotate (add the new key, sign with it, remove the old one).
	// +optional
	JWKSSecretRef *JWKSSecretKeySelector `json:"jwksSecretRef,omitempty"`

	// Let clients connect with just a name (chatd --allow-anonymous).
	// Development only: names are not reserved and share the user-id
	// namespace with token subjects.
	// +kubebuilder:default=false
	// +optional
	AllowAnonymous bool `json:"allowAnonymous,omitempty"`

	// When set, tokens must carry exactly this "iss" claim (chatd --jwt-issuer).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Issuer string `json:"issuer,omitempty"`

	// When set, a token's "aud" claim must contain this value
	// (chatd --jwt-audience).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Audience string `json:"audience,omitempty"`
}

// JWTSecretKeySelector selects the key of a Secret, in the ChatCluster's
// namespace, that holds the HS256 shared secret.
type JWTSecretKeySelector struct {
	// Name of the Secret, in the ChatCluster's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key within the Secret.
	// +kubebuilder:default="jwt-secret"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// JWTPublicKeySelector selects the key of a Secret, in the ChatCluster's
// namespace, that holds the PEM public key that verifies tokens.
type JWTPublicKeySelector struct {
	// Name of the Secret, in the ChatCluster's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key within the Secret.
	// +kubebuilder:default="jwt-public-key"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// JWKSSecretKeySelector selects the key of a Secret, in the ChatCluster's
// namespace, that holds a JSON Web Key Set.
type JWKSSecretKeySelector struct {
	// Name of the Secret, in the ChatCluster's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key within the Secret.
	// +kubebuilder:default="jwks.json"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// GossipSpec is how chatd nodes find and trust each other over gossip.
// The inter-node transport is authenticated by the pods' certificates (see
// PeerTLSSpec), not by anything here.
//
// +kubebuilder:validation:XValidation:rule="has(self.keyringSecretRef) == has(oldSelf.keyringSecretRef) && (!has(self.keyringSecretRef) || self.keyringSecretRef == oldSelf.keyringSecretRef)",message="gossip.keyringSecretRef is immutable: nodes without a common gossip key cannot talk, so switching to another Secret would split the running cluster; rotate the keys inside the Secret instead"
type GossipSpec struct {
	// Secret key holding the gossip keyring: one key per line (base64 of
	// 16, 24 or 32 bytes: openssl rand -base64 32), the primary first
	// (chatd --gossip-keyring-file, re-read every 10 s, so keys rotate
	// without a restart: add the new key as a second line, then swap the
	// lines, then remove the old key, each step once every pod has it).
	// When left out, the operator generates a keyring of one key in a
	// Secret it owns (<name>-gossip-keyring) and rotates it on request
	// (the annotation chat.ringchat.io/gossip-key-rotation). Immutable.
	// +optional
	KeyringSecretRef *GossipKeyringSelector `json:"keyringSecretRef,omitempty"`

	// Name of the cluster: nodes with another label never merge with these,
	// even when they reach each other (chatd --cluster-label). Empty means
	// "<namespace>/<name>" of this ChatCluster (shortened with a hash when
	// longer than 64 characters). Immutable once the ChatCluster exists.
	// +kubebuilder:default=""
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^([a-zA-Z0-9]([-a-zA-Z0-9_./]*[a-zA-Z0-9])?)?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="gossip.clusterLabel is immutable: nodes with different labels never merge, so changing it would split the running cluster"
	// +optional
	ClusterLabel string `json:"clusterLabel,omitempty"`
}

// GossipKeyringSelector selects the key of a Secret, in the ChatCluster's
// namespace, that holds the gossip keyring.
type GossipKeyringSelector struct {
	// Name of the Secret, in the ChatCluster's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key within the Secret.
	// +kubebuilder:default="keyring"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// ServiceSpec is the Service that clients connect to.
//
// +kubebuilder:validation:XValidation:rule="!has(self.nodePort) || self.type == 'NodePort' || self.type == 'LoadBalancer'",message="nodePort requires type NodePort or LoadBalancer",fieldPath=".nodePort"
type ServiceSpec struct {
	// Service type: ClusterIP, NodePort or LoadBalancer.
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// Port the Service listens on; traffic goes to chatd's HTTP port.
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// Node port to use with type NodePort or LoadBalancer. Left out, Kubernetes
	// picks one.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	NodePort *int32 `json:"nodePort,omitempty"`

	// Annotations for the Service, e.g. a cloud load balancer's settings.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TLSSpec names the certificate for serving wss://.
type TLSSpec struct {
	// Name of a kubernetes.io/tls Secret (tls.crt and tls.key) in the
	// ChatCluster's namespace, such as cert-manager writes. chatd reloads the
	// pair when the Secret changes (within about a minute and a half: the
	// kubelet's sync, then chatd's 10 s check), so renewing the certificate
	// restarts no pod. The probes switch to HTTPS.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	SecretName string `json:"secretName"`
}

// PodTemplateOverrides are additions to the chatd pods the operator creates.
type PodTemplateOverrides struct {
	// Labels added to the pods. The operator's own labels (app.kubernetes.io/name
	// and the chat.ringchat.io/ prefix) select the pods and cannot be set here.
	// +kubebuilder:validation:XValidation:rule="!('app.kubernetes.io/name' in self) && self.all(k, !k.startsWith('chat.ringchat.io/'))",message="podTemplate.labels cannot set app.kubernetes.io/name or chat.ringchat.io/ labels: the operator uses them to select its pods"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations added to the pods. Keys with the chat.ringchat.io/ prefix
	// are the operator's and cannot be set here.
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('chat.ringchat.io/'))",message="podTemplate.annotations cannot set chat.ringchat.io/ annotations: they are the operator's"
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// Scheduling constraints of the pods. Left out, the operator prefers to
	// put the pods on different nodes.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// Tolerations of the pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Node labels a pod's node must have.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// How the pods spread across zones and nodes. Left out, the operator
	// spreads them across zones when it can.
	// +optional
	// +listType=atomic
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// PriorityClass of the pods.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// Secrets with credentials to pull the image from a private registry.
	// +optional
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Extra environment variables of the chatd container. Use them for chatd
	// settings this spec does not model, e.g. CHATD_LOG_LEVEL,
	// CHATD_ALLOWED_ORIGINS or CHATD_MAX_ROOMS (see chatd's configuration
	// reference). The operator passes what the spec sets as command-line
	// flags, which take precedence over these variables.
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []corev1.EnvVar `json:"env,omitempty"`
}

// PodDisruptionBudgetSpec limits voluntary evictions of the chatd pods. Set
// one of maxUnavailable and minAvailable; with neither, maxUnavailable is 1.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.maxUnavailable) && has(self.minAvailable))",message="set podDisruptionBudget.maxUnavailable or podDisruptionBudget.minAvailable, not both"
type PodDisruptionBudgetSpec struct {
	// Pods that may be unavailable at once after an eviction: a number, or a
	// percentage of replicas such as "25%".
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="must be a non-negative number or a percentage such as 25%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// Pods that must stay available after an eviction: a number, or a
	// percentage of replicas such as "50%".
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="must be a non-negative number or a percentage such as 50%"
	// +optional
	MinAvailable *intstr.IntOrString `json:"minAvailable,omitempty"`
}

// LimitsSpec holds per-node and per-connection limits of chatd. A field left
// out keeps chatd's default.
type LimitsSpec struct {
	// Open WebSocket connections per node; more are refused with 503 and
	// Retry-After. 0 means unlimited. chatd's default: 50000
	// (chatd --max-connections).
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxConnections *int32 `json:"maxConnections,omitempty"`

	// Open connections per client IP on a node; more are refused with 429.
	// Behind a proxy every client shares the proxy's IP. 0 means unlimited.
	// chatd's default: 1000 (chatd --max-connections-per-ip).
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxConnectionsPerIP *int32 `json:"maxConnectionsPerIP,omitempty"`

	// Longest message text, in bytes of UTF-8. chatd's default: 4096
	// (chatd --max-text-bytes).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65536
	// +optional
	MaxTextBytes *int32 `json:"maxTextBytes,omitempty"`

	// Client frames per second allowed per connection (token-bucket refill),
	// as a decimal number such as "20" or "0.5". chatd's default: "20"
	// (chatd --rate).
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^[0-9]+(\.[0-9]+)?$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[0-9]+([.][0-9]+)?$') || double(self) > 0.0",message="rate must be greater than 0"
	// +optional
	Rate string `json:"rate,omitempty"`

	// Token-bucket size per connection: frames a client may send in a burst.
	// chatd's default: 40 (chatd --rate-burst).
	// +kubebuilder:validation:Minimum=1
	// +optional
	RateBurst *int32 `json:"rateBurst,omitempty"`
}

// SocketIOSpec configures chatd's Socket.IO endpoint. A field left out
// keeps chatd's default.
type SocketIOSpec struct {
	// Serve /socket.io/ at all. false turns the endpoint off (chatd
	// --socketio-namespaces=""); clients then get 404 there. Default true.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// The namespaces served: a namespace is a separate space of rooms
	// (room "general" in "/support" is not "general" in "/"), and a client
	// asking for one not listed gets CONNECT_ERROR invalid_namespace.
	// Default: "/" alone (chatd --socketio-namespaces).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Namespaces []SocketIONamespace `json:"namespaces,omitempty"`

	// How old a missed message may be for a reconnecting client to recover
	// its rooms (socket.recovered); "0s" turns recovery off. chatd's
	// default: 2m (chatd --socketio-recovery-window). At most 24h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) <= duration('24h')",message="recoveryWindow must be at most 24h"
	// +optional
	RecoveryWindow *metav1.Duration `json:"recoveryWindow,omitempty"`

	// How long a client has to answer a ping before it is dropped (pings
	// come every ping interval). chatd's default: 20s (chatd
	// --socketio-ping-timeout). Between 1s and 10m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('10m'))",message="pingTimeout must be between 1s and 10m"
	// +optional
	PingTimeout *metav1.Duration `json:"pingTimeout,omitempty"`
}

// SocketIONamespace is one Socket.IO namespace chatd serves.
type SocketIONamespace struct {
	// The namespace: "/" or "/" followed by 1-23 letters, digits, '-' or
	// '_' (e.g. "/support").
	// +kubebuilder:validation:MaxLength=24
	// +kubebuilder:validation:Pattern=`^/([A-Za-z0-9_-]{1,23})?$`
	Name string `json:"name"`

	// Refuse anonymous clients in this namespace: only a client with a
	// valid token may enter (CONNECT_ERROR otherwise).
	// +optional
	TokenOnly bool `json:"tokenOnly,omitempty"`
}

// HooksSpec configures chatd's backend hooks. A hook left out is not
// called; a field left out keeps chatd's default.
type HooksSpec struct {
	// Called for every hello without a JWT: the backend answers the user's
	// identity (from the cookie or headers it is shown), or refuses.
	// With it, spec.auth needs no JWT key nor allowAnonymous.
	// +optional
	Connect *HookSpec `json:"connect,omitempty"`

	// Called for every join and resume of a room: allow or refuse.
	// +optional
	Join *HookSpec `json:"join,omitempty"`

	// Called for every room message before it is stored: allow, refuse
	// with a reason, or replace the text.
	// +optional
	Send *HookSpec `json:"send,omitempty"`

	// Extra attempts of a failed connect or join call, and of a send call
	// carrying a client id (on 5xx, timeouts, unreachable). chatd's
	// default: 1 (--hook-retries).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=5
	// +optional
	Retries *int32 `json:"retries,omitempty"`

	// Consecutive failed attempts of a hook that open its circuit breaker
	// (calls then fail at once, by the hook's onFailure). chatd's default:
	// 5 (--hook-breaker-failures).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	BreakerFailures *int32 `json:"breakerFailures,omitempty"`

	// How long an open circuit breaker fails calls before it lets one
	// through to probe the backend. chatd's default: 5s
	// (--hook-breaker-open). Between 100ms and 10m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('100ms') && duration(self) <= duration('10m'))",message="breakerOpen must be between 100ms and 10m"
	// +optional
	BreakerOpen *metav1.Duration `json:"breakerOpen,omitempty"`

	// Secret key holding the secret that signs every hook request and
	// event stream batch (X-Ringchat-Signature, HMAC-SHA256 over the
	// timestamp and the body), which the backend verifies. Mounted as a
	// file (chatd --hook-secret-file). Left out, requests are not signed.
	// +optional
	SigningSecretRef *HookSecretKeySelector `json:"signingSecretRef,omitempty"`

	// The event stream (docs/api.md#event-stream): every committed
	// message and deletion of every room POSTed in batches to the
	// backend, at least once and in each room's order, with a cursor per
	// room kept with the room's log. Left out, there is none.
	// +optional
	EventStream *EventStreamSpec `json:"eventStream,omitempty"`
}

// EventStreamSpec configures the event stream to the backend.
type EventStreamSpec struct {
	// The backend's URL, http:// or https://, that every chatd pod POSTs
	// the batches of the rooms it owns to.
	// +kubebuilder:validation:MinLength=8
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/?#]+([/?#][^\s]*)?$`
	// +required
	URL string `json:"url"`

	// Deadline of one POST; a batch not accepted in time is sent again.
	// chatd's default: 5s (--event-stream-timeout). Between 10ms and 1m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('10ms') && duration(self) <= duration('1m'))",message="timeout must be between 10ms and 1m"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Most entries in one POST. chatd's default: 500
	// (--event-stream-batch).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	BatchSize *int32 `json:"batchSize,omitempty"`
}

// HookSpec is one backend hook.
type HookSpec struct {
	// The backend's URL, http:// or https://, that chatd POSTs the hook's
	// JSON request to (docs/api.md#hooks).
	// +kubebuilder:validation:MinLength=8
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/?#]+([/?#][^\s]*)?$`
	// +required
	URL string `json:"url"`

	// Deadline of one call. chatd's default: 2s (--hook-timeout). Between
	// 10ms and 1m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('10ms') && duration(self) <= duration('1m'))",message="timeout must be between 10ms and 1m"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// What happens when the backend fails (an error, a timeout, an open
	// circuit breaker): deny (the connection, join or message is refused
	// with unavailable; connect: close 1013) or allow (as if there were no
	// hook). Default deny.
	// +kubebuilder:validation:Enum=deny;allow
	// +kubebuilder:default=deny
	// +optional
	OnFailure string `json:"onFailure,omitempty"`
}

// HookSecretKeySelector selects the key of a Secret, in the ChatCluster's
// namespace, that holds the hooks' signing secret.
type HookSecretKeySelector struct {
	// Name of the Secret, in the ChatCluster's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key within the Secret.
	// +kubebuilder:default="hook-secret"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// ServerAPISpec configures chatd's server API.
type ServerAPISpec struct {
	// Serve the server API on every chatd pod's admin port. Its keys are
	// in the Secret <name>-api (key "keys", one key a line), which the
	// operator creates once with one random key and never writes again:
	// read a key from it, and rotate by editing it (add a line, move the
	// callers, remove the old line; chatd re-reads the file). Turning the
	// API on or off restarts the pods one at a time. Default false.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
}

// Condition types of a ChatCluster's status.
const (
	// ConditionAvailable is True when clients can connect and send: enough
	// nodes are ready to hold a majority of the cluster.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while the operator creates, scales or
	// rolls the cluster, and False once the pods match the spec.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when the cluster runs below its spec (pods
	// not ready) or the operator cannot reconcile it.
	ConditionDegraded = "Degraded"
)

// Reasons of the Available condition.
const (
	// ReasonAllReplicasReady: every replica is ready (Available=True).
	ReasonAllReplicasReady = "AllReplicasReady"
	// ReasonQuorumReady: a majority of the replicas is ready, so the cluster
	// accepts messages, with less redundancy (Available=True).
	ReasonQuorumReady = "QuorumReady"
	// ReasonQuorumLost: fewer than a majority of the replicas is ready, so
	// nodes refuse new messages (Available=False).
	ReasonQuorumLost = "QuorumLost"
	// ReasonScaledToZero: replicas is 0 (Available=False).
	ReasonScaledToZero = "ScaledToZero"
)

// Reasons of the Progressing condition.
const (
	// ReasonCreating: the cluster's objects are being created (Progressing=True).
	ReasonCreating = "Creating"
	// ReasonScalingUp: nodes are being added (Progressing=True).
	ReasonScalingUp = "ScalingUp"
	// ReasonScalingDown: nodes are being drained and removed one at a time
	// (Progressing=True).
	ReasonScalingDown = "ScalingDown"
	// ReasonRollingUpdate: pods are being replaced for a new image or
	// configuration (Progressing=True).
	ReasonRollingUpdate = "RollingUpdate"
	// ReasonUpToDate: every pod matches the spec (Progressing=False).
	ReasonUpToDate = "UpToDate"
	// ReasonPaused: the ChatCluster carries AnnotationPauseReconcile, so
	// the operator changes nothing of it (Progressing=False).
	ReasonPaused = "ReconciliationPaused"
)

// Reasons of the Degraded condition.
const (
	// ReasonAsExpected: nothing is wrong (Degraded=False).
	ReasonAsExpected = "AsExpected"
	// ReasonReplicasNotReady: some replicas are not ready (Degraded=True).
	ReasonReplicasNotReady = "ReplicasNotReady"
	// ReasonSecretNotFound: a Secret the spec refers to, or a key in it, is
	// missing (Degraded=True).
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonReconcileFailed: the operator failed to create or update an
	// object; the message says which (Degraded=True).
	ReasonReconcileFailed = "ReconcileFailed"
	// ReasonVolumeResizeFailed: a volume could not be grown to
	// spec.storage.size, typically because its StorageClass does not allow
	// expansion; the message says which and why (Degraded=True).
	ReasonVolumeResizeFailed = "VolumeResizeFailed"
)

// ChatClusterStatus is the observed state of a ChatCluster.
type ChatClusterStatus struct {
	// Latest observations: Available, Progressing and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// The metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Pods of the cluster that exist.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// Pods of the cluster that are ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Label selector of the pods, in string form, for the scale subresource
	// (HorizontalPodAutoscaler).
	// +optional
	Selector string `json:"selector,omitempty"`

	// Image that every pod runs once a rollout has finished.
	// +optional
	CurrentImage string `json:"currentImage,omitempty"`

	// Hash of the chatd configuration the pods run; a new hash rolls the pods.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`

	// Where the pods keep history, and the state of their volumes.
	// +optional
	Storage *StorageStatus `json:"storage,omitempty"`
}

// StorageMode says where a ChatCluster's pods keep history.
// +kubebuilder:validation:Enum=Persistent;Memory
type StorageMode string

const (
	// StorageModePersistent: every pod keeps history on its own volume
	// (spec.storage).
	StorageModePersistent StorageMode = "Persistent"
	// StorageModeMemory: history lives only in the memory of each room's
	// owner and replicas (no spec.storage).
	StorageModeMemory StorageMode = "Memory"
)

// StorageStatus is the state of a ChatCluster's volumes.
type StorageStatus struct {
	// Persistent when the pods keep history on volumes (spec.storage),
	// Memory when they keep it in memory only.
	// +required
	Mode StorageMode `json:"mode"`

	// PersistentVolumeClaims of the cluster that exist, including those of
	// pods scaled away whose volumes are kept.
	// +optional
	Claims int32 `json:"claims,omitempty"`

	// Of those, the claims bound to a volume.
	// +optional
	BoundClaims int32 `json:"boundClaims,omitempty"`

	// Smallest capacity among the bound volumes: the most history any node
	// is sure to have room for. Below spec.storage.size while volumes grow.
	// +optional
	Capacity *resource.Quantity `json:"capacity,omitempty"`
}

// ChatCluster runs a cluster of ringchat chat servers (chatd): WebSocket chat
// with rooms, presence, history and lossless resume, replicated across nodes
// without an external broker.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=cc,categories=ringchat
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`,description="Desired chatd nodes"
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`,description="Ready chatd nodes"
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image`,description="chatd image"
// +kubebuilder:printcolumn:name="Storage",type=string,JSONPath=`.status.storage.mode`,description="Where history is kept: Persistent (volumes) or Memory"
// +kubebuilder:printcolumn:name="Available",type=string,JSONPath=`.status.conditions[?(@.type=="Available")].status`,description="Whether clients can connect and send"
// +kubebuilder:printcolumn:name="Progressing",type=string,JSONPath=`.status.conditions[?(@.type=="Progressing")].status`,priority=1,description="Whether a rollout or scaling is under way"
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`,priority=1,description="Whether the cluster runs below its spec"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be at most 52 characters of lower-case letters, digits and '-', starting with a letter: it names the cluster's pods and Services"
type ChatCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Desired state of the cluster.
	// +required
	Spec ChatClusterSpec `json:"spec"`

	// Observed state of the cluster, written by the operator.
	// +optional
	Status ChatClusterStatus `json:"status,omitempty"`
}

// ChatClusterList is a list of ChatClusters.
//
// +kubebuilder:object:root=true
type ChatClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ChatCluster `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ChatCluster{}, &ChatClusterList{})
}
