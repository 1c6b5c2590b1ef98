package controllers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The pods' PersistentVolumeClaims (spec.storage). The StatefulSet
// controller creates them from the volumeClaimTemplate, which is fixed when
// the StatefulSet is created; the operator does not own them (they outlive
// the ChatCluster) and only ever changes one field: it grows a claim's
// storage request to spec.storage.size when the size grew. The API server
// allows that only for a claim whose StorageClass has allowVolumeExpansion
// (and refuses any shrink); a refusal is reported in the status
// (Degraded=True/VolumeResizeFailed), not retried in a loop.

// dataClaims lists cc's data claims: the claims in its namespace with its
// selector labels and the StatefulSet's claim name (data-<name>-<ordinal>),
// in ordinal order.
func (r *ChatClusterReconciler) dataClaims(ctx context.Context, cc *chatv1alpha1.ChatCluster) ([]corev1.PersistentVolumeClaim, error) {
	var list corev1.PersistentVolumeClaimList
	if err := r.List(ctx, &list, client.InNamespace(cc.Namespace), client.MatchingLabels(cc.SelectorLabels())); err != nil {
		return nil, fmt.Errorf("listing the PersistentVolumeClaims: %w", err)
	}
	return filterDataClaims(cc, list.Items), nil
}

// filterDataClaims keeps the claims named as cc's StatefulSet names its
// data claims, in ordinal order.
func filterDataClaims(cc *chatv1alpha1.ChatCluster, claims []corev1.PersistentVolumeClaim) []corev1.PersistentVolumeClaim {
	name := regexp.MustCompile(`^` + regexp.QuoteMeta(chatv1alpha1.DataVolumeName+"-"+cc.Name+"-") + `(0|[1-9][0-9]*)$`)
	var out []corev1.PersistentVolumeClaim
	for _, c := range claims {
		if name.MatchString(c.Name) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b corev1.PersistentVolumeClaim) int {
		if d := len(a.Name) - len(b.Name); d != 0 {
			return d // data-x-2 before data-x-10
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// claimsToGrow are the bound claims whose storage request is below size.
// Claims being deleted are left alone, and so are claims not bound yet (the
// API server expands only bound ones): the watch on claims brings the
// reconcile that grows them once they are.
func claimsToGrow(claims []corev1.PersistentVolumeClaim, size resource.Quantity) []corev1.PersistentVolumeClaim {
	var out []corev1.PersistentVolumeClaim
	for _, c := range claims {
		req := c.Spec.Resources.Requests[corev1.ResourceStorage]
		if c.DeletionTimestamp.IsZero() && c.Status.Phase == corev1.ClaimBound && req.Cmp(size) < 0 {
			out = append(out, c)
		}
	}
	return out
}

// growClaims asks every data claim below spec.storage.size for that size,
// with a merge patch of that one field (the StatefulSet controller writes
// the claims' owner references meanwhile). It returns the claims as they
// are afterwards and the refusals, one error naming each claim.
func (r *ChatClusterReconciler) growClaims(ctx context.Context, cc *chatv1alpha1.ChatCluster, claims []corev1.PersistentVolumeClaim) ([]corev1.PersistentVolumeClaim, error) {
	s := cc.Spec.Storage
	if s == nil {
		return claims, nil
	}
	var errs []error
	for _, c := range claimsToGrow(claims, s.Size) {
		orig := c.DeepCopy()
		if c.Spec.Resources.Requests == nil {
			c.Spec.Resources.Requests = corev1.ResourceList{}
		}
		c.Spec.Resources.Requests[corev1.ResourceStorage] = s.Size
		if err := r.Patch(ctx, &c, client.MergeFrom(orig)); err != nil {
			errs = append(errs, fmt.Errorf("growing PersistentVolumeClaim %s to %s: %w", c.Name, s.Size.String(), err))
			continue
		}
		i := slices.IndexFunc(claims, func(x corev1.PersistentVolumeClaim) bool { return x.Name == c.Name })
		claims[i] = c
	}
	return claims, errors.Join(errs...)
}
