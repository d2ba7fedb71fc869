package deploy

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pinned is an image reference by version and digest: what production
// runs, so that a tag moved in a registry never changes it.
var pinned = regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$`)

// unresolved is the digest the production overlay carries for images whose
// digest is set when a release is cut (README.md, "Images").
const unresolved = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// images returns every container image of the built overlay, by workload.
func images(m manifests) map[string][]string {
	out := map[string][]string{}
	for _, w := range m.workloads() {
		for _, c := range slices.Concat(w.pod.Spec.InitContainers, w.pod.Spec.Containers) {
			out[w.name] = append(out[w.name], c.Image)
		}
	}
	return out
}

func TestProductionImagesPinned(t *testing.T) {
	m := build(t, "k8s/overlays/production")
	release := os.Getenv("PARLEY_RELEASE") != ""
	for workload, imgs := range images(m) {
		for _, img := range imgs {
			if !pinned.MatchString(img) {
				t.Errorf("%s: image %s is not pinned as name:version@sha256:digest", workload, img)
			}
			// A release must have every digest resolved; day to day the
			// release's own are not known yet.
			if release && strings.HasSuffix(img, "@"+unresolved) {
				t.Errorf("%s: image %s: set its digest before the release (README.md, \"Images\")", workload, img)
			}
		}
	}
}

// embeddedNATS is the nats-server version the parley binary embeds (and
// every test runs), from cmd/parley's go.mod.
func embeddedNATS(t *testing.T) string {
	t.Helper()
	f, err := os.Open("../cmd/parley/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "github.com/nats-io/nats-server/v2" {
			return strings.TrimPrefix(fields[1], "v")
		}
	}
	t.Fatal("cmd/parley/go.mod requires no github.com/nats-io/nats-server/v2")
	return ""
}

// TestNATSVersionMatchesEmbedded keeps the NATS servers of every overlay on
// the version of the server embedded in `parley all` and the tests, so
// that what is tested is what runs.
func TestNATSVersionMatchesEmbedded(t *testing.T) {
	want := embeddedNATS(t)
	for _, overlay := range overlays {
		m := build(t, "k8s/overlays/"+overlay)
		for _, c := range m.statefulSets["nats"].Spec.Template.Spec.Containers {
			if c.Name != "nats" {
				continue // the config reloader has versions of its own
			}
			img := c.Image
			ref, _, _ := strings.Cut(img, "@")
			name, tag, _ := strings.Cut(ref, ":")
			version, _, _ := strings.Cut(tag, "-")
			if name != "nats" || version != want {
				t.Errorf("%s: NATS image %s, want nats:%s (the embedded nats-server, cmd/parley/go.mod)", overlay, img, want)
			}
		}
	}
}

// TestDockerfile checks the image build: its runtime base pinned by
// digest, its build bases by exact version, and a context that leaves out
// local data and build output.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	for _, line := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == "FROM" {
			froms = append(froms, fields[1])
		}
	}
	if len(froms) == 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	if last := froms[len(froms)-1]; !pinned.MatchString(last) {
		t.Errorf("Dockerfile: runtime base %s is not pinned by digest", last)
	}
	exact := regexp.MustCompile(`:[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9]+)?$`)
	for _, from := range froms {
		if !pinned.MatchString(from) && !exact.MatchString(from) {
			t.Errorf("Dockerfile: base %s has no exact version (major.minor.patch)", from)
		}
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatalf("no .dockerignore beside the build context's root: %v", err)
	}
	lines := strings.Split(string(ignore), "\n")
	for _, must := range []string{"**/data", "bin", "**/node_modules", ".git", "**/test-results"} {
		if !slices.Contains(lines, must) {
			t.Errorf(".dockerignore: does not leave out %s", must)
		}
	}
}
