package layers

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pkg is what the shape tests need of `go list -json`.
type pkg struct {
	ImportPath, Dir                   string
	GoFiles, CgoFiles, IgnoredGoFiles []string
	TestGoFiles, XTestGoFiles         []string
}

func listPackages(t *testing.T) (root string, pkgs []pkg) {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
		if p.ImportPath == module+"config" {
			root = filepath.Dir(p.Dir)
		}
	}
	if root == "" {
		t.Fatal("go list did not list package config")
	}
	return root, pkgs
}

// rel is p's directory relative to the module root, slash-separated.
func (p pkg) rel() string { return strings.TrimPrefix(p.ImportPath, module) }

// productFiles are p's Go files other than tests, on every platform.
func (p pkg) productFiles() []string {
	return slices.Concat(p.GoFiles, p.CgoFiles, p.IgnoredGoFiles)
}

var cellPath = regexp.MustCompile("`([^`]+)`")

// TestREADMELayoutListsEveryPackage: every package `go list ./...` knows has
// a row of its own in README.md's "Layout" table, with what it is for, and
// every path the table names exists.
func TestREADMELayoutListsEveryPackage(t *testing.T) {
	root, pkgs := listPackages(t)
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Layout\n")
	if !ok {
		t.Fatal(`README.md has no "## Layout" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]string{} // path → what
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) < 2 || strings.TrimSpace(cells[1]) == "" {
			t.Errorf("README.md Layout row without what its path is for: %s", line)
			continue
		}
		for _, m := range cellPath.FindAllStringSubmatch(cells[0], -1) {
			path := strings.TrimSuffix(m[1], "/")
			rows[path] = cells[1]
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(path))); err != nil {
				t.Errorf("README.md Layout names %s, which does not exist", m[1])
			}
		}
	}
	for _, p := range pkgs {
		if _, ok := rows[p.rel()]; !ok {
			t.Errorf("README.md Layout has no row for package %s: add one with its responsibility", p.rel())
		}
	}
}

var fileName = regexp.MustCompile(`[\w*]+(\.\w+)+|[\w-]+/`)

// TestEveryPackageHasDocGo: every package has a doc.go that carries the
// package comment (no other file has one), with a file map naming each of
// the package's files and naming only files that exist, and saying what
// goroutines it starts and what locks it takes where it has any.
func TestEveryPackageHasDocGo(t *testing.T) {
	_, pkgs := listPackages(t)
	for _, p := range pkgs {
		fset := token.NewFileSet()
		doc, err := parser.ParseFile(fset, filepath.Join(p.Dir, "doc.go"), nil, parser.ParseComments)
		if err != nil {
			t.Errorf("%s: %v (every package has a doc.go with its package comment)", p.rel(), err)
			continue
		}
		text := doc.Doc.Text()
		if !strings.Contains(text, "Files") {
			t.Errorf("%s/doc.go: no file map (a \"Files:\" paragraph)", p.rel())
			continue
		}
		var goroutines, locks bool
		for _, f := range p.productFiles() {
			if f != "doc.go" && !mentions(text, f) {
				t.Errorf("%s/doc.go: the file map does not name %s", p.rel(), f)
			}
			file, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if f != "doc.go" && file.Doc != nil {
				t.Errorf("%s/%s has a package comment: it belongs in doc.go", p.rel(), f)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.GoStmt:
					goroutines = true
				case *ast.SelectorExpr:
					if x, ok := n.X.(*ast.Ident); ok && x.Name == "sync" && (n.Sel.Name == "Mutex" || n.Sel.Name == "RWMutex") {
						locks = true
					}
				}
				return true
			})
		}
		if goroutines && !strings.Contains(text, "Goroutines") {
			t.Errorf("%s/doc.go: the package starts goroutines and its doc does not say which (\"Goroutines:\")", p.rel())
		}
		if locks && !strings.Contains(text, "Locks:") && !strings.Contains(text, "Lock order") {
			t.Errorf("%s/doc.go: the package has mutexes and its doc does not give them or their order (\"Locks:\", \"Lock order\")", p.rel())
		}
		_, files, _ := strings.Cut(text, "Files")
		for _, name := range fileName.FindAllString(files, -1) {
			if !strings.HasSuffix(name, ".go") {
				continue
			}
			if m, _ := filepath.Glob(filepath.Join(p.Dir, name)); len(m) == 0 {
				t.Errorf("%s/doc.go: the file map names %s, which is not in the package", p.rel(), name)
			}
		}
	}
}

// mentions reports whether doc names file, literally or by a glob such as
// peer_*.go.
func mentions(doc, file string) bool {
	for _, name := range fileName.FindAllString(doc, -1) {
		if ok, _ := filepath.Match(name, file); ok {
			return true
		}
	}
	return false
}

var (
	webAddress = regexp.MustCompile(`https?://\S+`)
	mdLink     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
)

// TestDocsPointInsideTheRepository: the Markdown files and the comments of
// product Go files name no web address, and every Markdown link leads to a
// file of the repository: what they refer to is here, and stays true with it.
func TestDocsPointInsideTheRepository(t *testing.T) {
	root, pkgs := listPackages(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "*.md").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	for _, md := range strings.Fields(string(out)) {
		if strings.Contains(md, "node_modules/") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, md))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range webAddress.FindAllString(string(data), -1) {
			if loopback(a) {
				continue // the reader's own txlane, not a page elsewhere
			}
			t.Errorf("%s names %s: refer to what is in the repository", md, a)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || webAddress.MatchString(target) { // reported above
				continue
			}
			path := filepath.Join(root, filepath.Dir(md), filepath.FromSlash(target))
			if r, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s links %s, outside the repository", md, m[1])
			} else if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links %s, which does not exist", md, m[1])
			}
		}
	}
	for _, p := range pkgs {
		for _, f := range p.productFiles() {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, cg := range file.Comments {
				for _, a := range webAddress.FindAllString(cg.Text(), -1) {
					t.Errorf("%s/%s: a comment names %s: refer to what is in the repository", p.rel(), f, a)
				}
			}
		}
	}
}

// loopback reports whether a web address names the local machine.
func loopback(addr string) bool {
	_, rest, _ := strings.Cut(addr, "://")
	return strings.HasPrefix(rest, "127.0.0.1") || strings.HasPrefix(rest, "localhost") || strings.HasPrefix(rest, "[::1]")
}
