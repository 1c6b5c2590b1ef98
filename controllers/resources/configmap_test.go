package resources

import (
	"reflect"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/controllers/chatdconfig"
	corev1 "k8s.io/api/core/v1"
)

func TestConfigMap(t *testing.T) {
	cc := testCluster(3)
	cfg := chatdconfig.Desired(cc, 3, []string{"jwt:abc"})
	cm := stored(build(t, ConfigMapBuilder{Config: cfg}, cc).(*corev1.ConfigMap))
	if !reflect.DeepEqual(cm.Data, cfg.Data) || cm.Annotations[chatv1alpha1.AnnotationConfigHash] != cfg.Hash {
		t.Errorf("data %v hash %q, want %v %q", cm.Data, cm.Annotations[chatv1alpha1.AnnotationConfigHash], cfg.Data, cfg.Hash)
	}
	// Edits by hand are undone; other tools' labels stay.
	cm.Data[chatdconfig.ArgsKey] = "--allow-anonymous=false\n"
	cm.Data["extra"] = "x"
	cm.BinaryData = map[string][]byte{"blob": {1}}
	cm.Labels["team"] = "chat"
	if err := (ConfigMapBuilder{Config: cfg}).Update(cc, cm); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cm.Data, cfg.Data) || cm.BinaryData != nil || cm.Labels["team"] != "chat" {
		t.Errorf("data %v binaryData %v labels %v: want the configuration restored and the label kept", cm.Data, cm.BinaryData, cm.Labels)
	}
}
