package hooks_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// TestPythonSocketIOClientHooks runs python-socketio's AsyncClient, a real
// Socket.IO client library, against a node whose three hooks a real
// backend answers (testdata/python/hooks.py says what it checks).
func TestPythonSocketIOClientHooks(t *testing.T) {
	t.Parallel()
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import socketio, aiohttp").Run(); err != nil {
		t.Fatalf("python3-socketio is not installed for %s (%v): run hack/ensure-node.sh (make test-deps does)", python, err)
	}
	be := startBackend(t, nil, func(hook string, req map[string]any, _ *http.Request) (int, any) {
		switch hook {
		case hooks.HookConnect:
			if user, ok := strings.CutPrefix(fmt.Sprint(req["cookie"]), "session="); ok {
				return http.StatusOK, allowUser(user)
			}
			return http.StatusOK, deny("no session")
		case hooks.HookJoin:
			if req["room"] == "staff" {
				return http.StatusOK, deny("staff only")
			}
		case hooks.HookSend:
			text, _ := req["text"].(string)
			return http.StatusOK, map[string]string{"result": "replace", "text": strings.ReplaceAll(text, "darn", "****")}
		}
		return http.StatusOK, map[string]string{"result": "allow"}
	})
	srv := chatdtest.StartWith(t, nodeFlags(), "--hook-connect-url", be.url("connect"),
		"--hook-join-url", be.url("join"), "--hook-send-url", be.url("send"))
	// The script's own waits are each bounded by Timeout; a client that
	// hangs anyway (a connect it never gives up on) is killed after a few
	// of them, so the test fails instead of stalling the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 4*testtime.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/python/hooks.py", "http://"+srv.Addr, fmt.Sprint(testtime.Timeout.Seconds()))
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("python client: %v", err)
	}
	for _, r := range be.requests(hooks.HookConnect) {
		if r["transport"] != "socket.io" {
			t.Fatalf("connect hook request %v", r)
		}
	}
}
