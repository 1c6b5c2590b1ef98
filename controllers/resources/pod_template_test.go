package resources

import (
	"maps"
	"reflect"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
)

// TestPodTemplateOverridesCannotReplaceTheOperators: podTemplate labels
// and env add to the operator's, never replace them.
func TestPodTemplateOverridesCannotReplaceTheOperators(t *testing.T) {
	cc := testCluster(3)
	cc.Spec.PodTemplate = &chatv1alpha1.PodTemplateOverrides{
		Labels: map[string]string{"team": "chat", LabelManagedBy: "someone-else"},
		Env:    []corev1.EnvVar{{Name: "CHATD_LOG_LEVEL", Value: "debug"}, {Name: chatdconfig.EnvPodName, Value: "fake"}},
	}
	tpl := PodTemplate(cc, chatdconfig.Desired(cc, 3, nil))
	want := maps.Clone(CommonLabels(cc))
	want["team"] = "chat"
	if !reflect.DeepEqual(tpl.Labels, want) {
		t.Errorf("pod labels %v, want %v", tpl.Labels, want)
	}
	var names []string
	for _, e := range tpl.Spec.Containers[0].Env {
		names = append(names, e.Name)
		if e.Name == chatdconfig.EnvPodName && e.ValueFrom == nil {
			t.Errorf("the spec replaced %s: %+v", chatdconfig.EnvPodName, e)
		}
	}
	if n := len(names); n != 5 || names[n-1] != "CHATD_LOG_LEVEL" {
		t.Errorf("env %v, want the operator's four and CHATD_LOG_LEVEL", names)
	}
}
