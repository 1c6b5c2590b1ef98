// Package version holds the build's version, stamped by the linker:
//
//	go build -ldflags "-X github.com/ringchat/ringchat/chatd/version.Version=v0.1.0"
package version

// Version is the release this binary was built from ("dev" when unstamped).
var Version = "dev"
