//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/chatd/api"
	chatclient "github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestServerAPIPublish: the ChatCluster has spec.serverAPI enabled; the
// operator generated its key Secret. A backend posts through one pod's
// admin port with that key, and a client on another pod receives the
// message; a retry with the same idempotency key gets the same seq, marked
// duplicate; a call without the key is refused with 401.
func TestServerAPIPublish(t *testing.T) {
	ctx := context.Background()
	cc, pods := clusterAndPods(t, ctx)
	if !cc.ServerAPIEnabled() {
		t.Fatal("the suite's ChatCluster has spec.serverAPI.enabled false (e2e/testdata/chatcluster.yaml)")
	}
	var sec corev1.Secret
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.APISecretName()}, &sec); err != nil {
		t.Fatalf("the API key Secret: %v", err)
	}
	key, _, _ := strings.Cut(strings.TrimSpace(string(sec.Data[chatv1alpha1.DefaultAPIKeysKey])), "\n")
	if key == "" {
		t.Fatalf("Secret %s holds no key", sec.Name)
	}

	room := uniqueName("api")
	reader := dialPod(t, ctx, cc, &pods[1], uniqueName("reader"))
	if _, err := reader.join(room); err != nil {
		t.Fatal(err)
	}
	port, err := adminPort(&pods[0])
	if err != nil {
		t.Fatal(err)
	}
	f, err := env.portForward(ctx, pods[0].Name, port)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	publish := func(key string) (int, api.Published, error) {
		body, _ := json.Marshal(map[string]string{"user": "backend", "text": "hello from the backend", "idempotency_key": "e2e-1"})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+f.Addr+"/api/v1/rooms/"+room+"/messages", bytes.NewReader(body))
		if err != nil {
			return 0, api.Published{}, err
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, api.Published{}, fmt.Errorf("POST on %s: %w", pods[0].Name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var p api.Published
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, &p); err != nil {
				return resp.StatusCode, p, fmt.Errorf("decoding %s: %w", b, err)
			}
		}
		return resp.StatusCode, p, nil
	}

	code, first, err := publish(key)
	if err != nil || code != http.StatusOK || first.Seq == 0 || first.Duplicate {
		t.Fatalf("publish: %d %+v %v, want 200 with a seq", code, first, err)
	}
	t.Logf("published through %s's admin port: %s seq %d", pods[0].Name, room, first.Seq)
	err = reader.readUntil(30*time.Second, "the backend's message", func(fr chatclient.Frame) (bool, error) {
		if fr.Type != protocol.TypeMessage {
			return false, nil
		}
		var m protocol.Message
		if err := fr.Decode(&m); err != nil {
			return false, err
		}
		if m.Room != room {
			return false, nil
		}
		if m.Seq != first.Seq || m.From != "backend" || m.Text != "hello from the backend" {
			return false, fmt.Errorf("got %+v, want seq %d from backend", m, first.Seq)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, again, err := publish(key)
	if err != nil || code != http.StatusOK || again.Seq != first.Seq || !again.Duplicate {
		t.Fatalf("retry with the same idempotency key: %d %+v %v, want seq %d marked duplicate", code, again, err, first.Seq)
	}
	if code, _, err := publish(""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("publish without a key: %d %v, want 401", code, err)
	}

	// Who is where, asked through pods[0]: the reader is on pods[1], the
	// room's owner may be any pod; every pod answers over the inter-node
	// transport.
	get := func(path string, out any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+f.Addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %s: %v", path, b, err)
		}
	}
	var p api.Presence
	get("/api/v1/rooms/"+room+"/presence", &p)
	if p.Count != 1 || len(p.Users) != 1 || p.Owner == "" || len(p.Unreached) != 0 {
		t.Fatalf("presence of %s: %+v, want the reader alone", room, p)
	}
	var rooms api.RoomList
	get("/api/v1/rooms", &rooms)
	found := false
	for _, r := range rooms.Rooms {
		found = found || (r.Room == room && r.Owner == p.Owner && r.Users == 1 && r.Head == first.Seq)
	}
	if !found || len(rooms.Unreached) != 0 {
		t.Fatalf("rooms %+v lack %s owned by %s", rooms, room, p.Owner)
	}
	var conns api.ConnectionList
	get("/api/v1/users/"+p.Users[0]+"/connections", &conns)
	if len(conns.Connections) != 1 || conns.Connections[0].Node != pods[1].Name || len(conns.Connections[0].Rooms) != 1 {
		t.Fatalf("the reader's connections %+v, want one on %s in %s", conns, pods[1].Name, room)
	}
	t.Logf("through %s: %s owned by %s, its reader on %s", pods[0].Name, room, p.Owner, conns.Connections[0].Node)
}
