package gateway_test

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// guidePath is docs/api.md, the API guide, from this package's directory.
var guidePath = filepath.Join("..", "..", "docs", "api.md")

func readGuide(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// openAPIOperations returns the operations of an OpenAPI document as
// "METHOD /path", sorted.
func openAPIOperations(t *testing.T, doc []byte) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(openAPIOperationObjects(t, doc)))
}

// openAPIOperationObjects returns each operation of an OpenAPI document,
// "METHOD /path", with its Operation Object.
func openAPIOperationObjects(t *testing.T, doc []byte) map[string]json.RawMessage {
	t.Helper()
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"` // operations, and a path's parameters
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	ops := map[string]json.RawMessage{}
	for path, byMethod := range d.Paths {
		for method, op := range byMethod {
			if method != "parameters" {
				ops[strings.ToUpper(method)+" "+path] = op
			}
		}
	}
	return ops
}

func readOpenAPI(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("internal", "httpapi", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAPIGuideMatchesOpenAPI checks that docs/api.md documents exactly the
// operations of the OpenAPI document the gateway serves: each as a heading
// "### `METHOD /path`".
func TestAPIGuideMatchesOpenAPI(t *testing.T) {
	want := openAPIOperations(t, readOpenAPI(t))
	heading := regexp.MustCompile("^### `([A-Z]+ /[^`]*)`$")
	var got []string
	for line := range strings.Lines(readGuide(t)) {
		if m := heading.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil {
			got = append(got, m[1])
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("operations of openapi.json (-) and docs/api.md (+) differ:\n%s", diff)
	}
	if dup := slices.Compact(slices.Clone(got)); len(dup) != len(got) {
		t.Errorf("docs/api.md documents an operation twice: %v", got)
	}
}

// TestOpenAPIListsEveryRoute checks that the routes httpapi registers are
// exactly the operations of openapi.json; TestOpenAPI checks that each
// documented operation is served.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("internal", "httpapi", "httpapi.go"))
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, m := range regexp.MustCompile(`m\.Handle(?:Func)?\("([A-Z]+ /[^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		routes = append(routes, m[1])
	}
	slices.Sort(routes)
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in internal/httpapi/httpapi.go: has routes() changed shape?", len(routes))
	}
	if diff := cmp.Diff(openAPIOperations(t, readOpenAPI(t)), routes); diff != "" {
		t.Errorf("openapi.json (-) and the routes of internal/httpapi/httpapi.go (+) differ:\n%s", diff)
	}
}

// TestAPIGuideListsEveryProblemType checks that each problem type the
// gateway's code can answer with is listed in docs/api.md.
func TestAPIGuideListsEveryProblemType(t *testing.T) {
	guide := readGuide(t)
	files, err := filepath.Glob(filepath.Join("internal", "httpapi", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	// newError(status, "slug", …), the rpc code table's {status, "slug"},
	// and invalid(…), whose slug is "invalid".
	slugs := regexp.MustCompile(`(?:newError\([^,]+|\{http\.Status\w+),\s*"([a-z-]+)"`)
	found := map[string]bool{"invalid": true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range slugs.FindAllStringSubmatch(string(src), -1) {
			found[m[1]] = true
		}
	}
	if len(found) < 10 {
		t.Fatalf("found only the problem types %v in internal/httpapi: has the code changed shape?", found)
	}
	for slug := range found {
		if !strings.Contains(guide, "`https://parley.dev/problems/"+slug+"`") {
			t.Errorf("docs/api.md does not list the problem type %s", slug)
		}
	}
}
