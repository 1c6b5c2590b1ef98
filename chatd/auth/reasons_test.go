package auth_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ringchat/ringchat/chatd/auth"
)

// TestReasonConstantsFit checks every reason* constant in the package
// source, including ones no test manages to trigger, so a reason that would
// overflow a WebSocket close frame fails the build however it is reached.
func TestReasonConstantsFit(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatalf("list package source: %v", err)
	}
	fset := token.NewFileSet()
	found := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", e.Name(), err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if !strings.HasPrefix(name.Name, "reason") || i >= len(spec.Values) {
					continue
				}
				lit, ok := spec.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s is not a string literal; reasons must be fixed text", name.Name)
					continue
				}
				reason, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("unquote %s: %v", name.Name, err)
				}
				found++
				if reason == "" || len(reason) > auth.MaxReasonLen || !utf8.ValidString(reason) {
					t.Errorf("%s = %q (%d bytes): want valid UTF-8 of 1..%d bytes",
						name.Name, reason, len(reason), auth.MaxReasonLen)
				}
			}
			return true
		})
	}
	if found == 0 {
		t.Fatal("found no reason constants; has the naming convention changed?")
	}
}
