package controllers

import (
	"context"
	"fmt"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// secretRef is a Secret a ChatCluster's pods need.
type secretRef struct {
	field string   // where the spec names it, for messages
	name  string   // Secret name, in the ChatCluster's namespace
	keys  []string // keys that must be present
	// rolls: chatd reads this one only at start, so a change of it must
	// roll the pods (its version goes into the configuration hash). The
	// others chatd re-reads by itself (JWKS, gossip keyring, TLS files).
	rolls bool
	// generated: one of the operator's own Secrets, created in the same
	// reconcile; not checked here.
	generated bool
}

// secretRefs lists the Secrets cc's pods use.
func secretRefs(cc *chatv1alpha1.ChatCluster) []secretRef {
	var refs []secretRef
	a := cc.Spec.Auth
	if r := a.JWTSecretRef; r != nil {
		s := r.Selector()
		refs = append(refs, secretRef{field: "spec.auth.jwtSecretRef", name: s.Name, keys: []string{s.Key}, rolls: true})
	}
	if r := a.JWTPublicKeySecretRef; r != nil {
		s := r.Selector()
		refs = append(refs, secretRef{field: "spec.auth.jwtPublicKeySecretRef", name: s.Name, keys: []string{s.Key}, rolls: true})
	}
	if r := a.JWKSSecretRef; r != nil {
		s := r.Selector()
		refs = append(refs, secretRef{field: "spec.auth.jwksSecretRef", name: s.Name, keys: []string{s.Key}})
	}
	if cc.Spec.Gossip.KeyringSecretRef != nil {
		s := cc.EffectiveGossipKeyringRef()
		refs = append(refs, secretRef{field: "spec.gossip.keyringSecretRef", name: s.Name, keys: []string{s.Key}})
	} else {
		refs = append(refs, secretRef{field: "generated gossip keyring", name: cc.GossipKeyringSecretName(), generated: true})
	}
	for _, name := range []string{cc.PeerCASecretName(), cc.PeerTLSSecretName(), cc.AdminSecretName()} {
		refs = append(refs, secretRef{field: "generated", name: name, generated: true})
	}
	if cc.ServerAPIEnabled() {
		refs = append(refs, secretRef{field: "generated", name: cc.APISecretName(), generated: true})
	}
	if t := cc.Spec.TLS; t != nil {
		refs = append(refs, secretRef{field: "spec.tls.secretName", name: t.SecretName, keys: []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey}})
	}
	return refs
}

// secretCheck is what checkSecrets found.
type secretCheck struct {
	missing  []string // one message per missing Secret or key
	versions []string // secretVersion of each Secret that rolls the pods
}

// checkSecrets reads the Secrets cc refers to (from the API server: the
// manager does not cache Secrets, see ClientOptions) and reports those that
// are missing, or lack a key.
func (r *ChatClusterReconciler) checkSecrets(ctx context.Context, cc *chatv1alpha1.ChatCluster) (secretCheck, error) {
	var out secretCheck
	for _, ref := range secretRefs(cc) {
		if ref.generated {
			continue
		}
		var s corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: cc.Namespace, Name: ref.name}, &s)
		switch {
		case apierrors.IsNotFound(err):
			out.missing = append(out.missing, fmt.Sprintf("Secret %s (%s) not found", ref.name, ref.field))
			continue
		case err != nil:
			return out, fmt.Errorf("reading Secret %s (%s): %w", ref.name, ref.field, err)
		}
		for _, k := range ref.keys {
			if _, ok := s.Data[k]; !ok {
				out.missing = append(out.missing, fmt.Sprintf("Secret %s (%s) has no key %q", ref.name, ref.field, k))
			}
		}
		if ref.rolls {
			out.versions = append(out.versions, secretVersion(ref, &s))
		}
	}
	return out, nil
}

func joinMessages(m []string) string { return strings.Join(m, "; ") }

// secretVersion identifies the version of a Secret that rolls the pods:
// its name, uid and resourceVersion, so that a new Secret of the same name
// or any write to it rolls the pods. Nothing derived from the content is
// shown (no hash: an unsalted digest of a low-entropy secret can be guessed
// offline). The cost: a write that does not change what chatd reads (a
// label, another key) rolls the pods too.
func secretVersion(ref secretRef, s *corev1.Secret) string {
	return fmt.Sprintf("%s=%s:uid=%s:resourceVersion=%s", ref.field, s.Name, s.UID, s.ResourceVersion)
}
