package api_test

import (
	"fmt"
	"testing"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/moderation"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Bans are entries of the replicated, stored moderation log: on three real
// processes with their own --data-dir, a room ban and a cluster-wide ban
// are still listed and enforced on every node after every node was killed
// at once and started again; an unban made before the restart stays lifted.
func TestBansSurviveRestartOfEveryNode(t *testing.T) {
	keys := keyFile(t, keyA)
	c := chatdtest.StartProcessClusterWith(t, 3, chatdtest.DataDirs(t.TempDir()),
		"--expected-nodes", "3", "--replication-factor", "2", "--api-key-file", keys)
	for _, n := range c.Nodes {
		waitBansLoaded(t, n.Server())
	}
	first := c.Nodes[0].Server()
	roomBan := banUser(t, first, api.BanRequest{User: "carol", Room: "lobby", Reason: "spam"})
	clusterBan := banUser(t, first, api.BanRequest{User: "bob", Duration: "24h", Reason: "fraud"})
	banUser(t, first, api.BanRequest{User: "dave", Room: "lobby"})
	unbanUser(t, first, "dave", "lobby")

	c.KillAll(c.Nodes...)
	for _, n := range c.All() {
		c.Restart(n)
	}
	c.WaitConverged()

	for _, n := range c.Nodes {
		// A node reads the log when it follows it again, and compares its
		// copy with the owner's every moderation.CheckInterval: the bans
		// are there within that (normally at once).
		want := fmt.Sprint([]api.Ban{clusterBan, roomBan})
		chatdtest.Eventually(t, moderation.CheckInterval+chatdtest.Timeout, n.Name+" listing the bans after the restart", func() (bool, string) {
			got := fmt.Sprint(waitBansLoaded(t, n.Server()))
			return got == want, got
		})
		carol := chatdtest.Connect(t, n.URL, "carol")
		if e := tryJoin(carol, "lobby"); e == nil || e.Code != protocol.CodeBanned {
			t.Fatalf("carol's join on %s after the restart: %+v", n.Name, e)
		}
		bob := chatdtest.Connect(t, n.URL, "bob")
		if e := tryJoin(bob, "elsewhere"); e == nil || e.Code != protocol.CodeBanned || e.Until != clusterBan.Until {
			t.Fatalf("bob's join on %s after the restart: %+v", n.Name, e)
		}
		dave := chatdtest.Connect(t, n.URL, "dave")
		if e := tryJoin(dave, "lobby"); e != nil {
			t.Fatalf("dave, unbanned before the restart, refused on %s: %+v", n.Name, e)
		}
	}
}
