package httpapi

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOpenAPIListsEveryRoute checks that the routes registered in
// routes() are exactly the operations of openapi.json. (TestOpenAPI in
// services/gateway checks that each documented operation is served.)
func TestOpenAPIListsEveryRoute(t *testing.T) {
	src, err := os.ReadFile("httpapi.go")
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, m := range regexp.MustCompile(`m\.Handle(?:Func)?\("([A-Z]+ /[^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		routes = append(routes, m[1])
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, byMethod := range doc.Paths {
		for method := range byMethod {
			if method != "parameters" {
				ops = append(ops, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(routes)
	slices.Sort(ops)
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in httpapi.go: has routes() changed shape?", len(routes))
	}
	if diff := cmp.Diff(ops, routes); diff != "" {
		t.Errorf("openapi.json (-) and the routes of httpapi.go (+) differ:\n%s", diff)
	}
}
