package layers

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/txlane/txlane/"

// layer ranks every product package; a package may import only packages of a
// strictly lower rank (so no two packages of one rank import each other).
// policy is pure and at the bottom; cmd is on top.
var layer = map[string]int{
	"policy":        0,
	"proxy/wire":    0,
	"router":        1,
	"proxy/auth":    1,
	"config":        1,
	"proxy/console": 2,
	"proxy/catalog": 2,
	"proxy":         3,
	"cmd/txlane":    4,
}

func TestPackagesImportDownward(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := map[string]bool{}
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		if strings.HasPrefix(name, "internal/") || strings.HasPrefix(name, "examples") {
			// Test helpers and examples: no product package may import them
			// (checked below), and they may import anything.
			continue
		}
		rank, ok := layer[name]
		if !ok {
			t.Errorf("package %s has no layer: add it to the table here and to the README's layout", name)
			continue
		}
		seen[name] = true
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if strings.HasPrefix(dep, "internal/") || strings.HasPrefix(dep, "examples") {
				t.Errorf("%s imports %s: product code must not depend on test helpers or examples", name, dep)
				continue
			}
			if r, ok := layer[dep]; !ok || r >= rank {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", name, rank, dep, r)
			}
		}
	}
	for name := range layer {
		if !seen[name] {
			t.Errorf("layer table names %s, which does not exist", name)
		}
	}
}
