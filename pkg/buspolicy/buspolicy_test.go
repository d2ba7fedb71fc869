package buspolicy_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/parley-chat/parley/pkg/buspolicy"
)

// TestWriteAuthorizationParses feeds the generated block to nats-server's
// own configuration parser and checks that it yields exactly the users the
// embedded server of `parley all` gets.
func TestWriteAuthorizationParses(t *testing.T) {
	names := append(buspolicy.Services(), buspolicy.Admin)
	passwords := map[string]string{}
	for _, u := range names {
		passwords[u] = "pw-" + u
		t.Setenv(buspolicy.PasswordVar("PARLEY_TEST_PW_", u), passwords[u])
	}
	var conf bytes.Buffer
	if err := buspolicy.WriteAuthorization(&conf, names, "PARLEY_TEST_PW_"); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(conf.Bytes(), []byte("pw-")) {
		t.Fatalf("generated configuration holds a password:\n%s", conf.Bytes())
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("ProcessConfigFile() error = %v\n%s", err, conf.Bytes())
	}
	want, err := buspolicy.Users(passwords)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(simplify(want), simplify(opts.Users)); diff != "" {
		t.Errorf("parsed users differ from Users() (-want +got):\n%s", diff)
	}
}

type user struct {
	Name, Password string
	Permissions    *server.Permissions
}

func simplify(us []*server.User) []user {
	var out []user
	for _, u := range us {
		out = append(out, user{u.Username, u.Password, u.Permissions})
	}
	slices.SortFunc(out, func(a, b user) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// TestPermissionsRestrict guards against the server's meaning of an absent
// list: a nil allow list lets a user do anything.
func TestPermissionsRestrict(t *testing.T) {
	for _, u := range buspolicy.Services() {
		p, err := buspolicy.Permissions(u)
		if err != nil {
			t.Fatal(err)
		}
		if p == nil || p.Publish == nil || len(p.Publish.Allow) == 0 || p.Subscribe == nil || len(p.Subscribe.Allow) == 0 {
			t.Errorf("Permissions(%q) = %+v, want allow lists for publish and subscribe", u, p)
		}
	}
	if p, err := buspolicy.Permissions(buspolicy.Admin); p != nil || err != nil {
		t.Errorf("Permissions(admin) = %v, %v, want nil, nil (full access)", p, err)
	}
}

func TestUnknownUser(t *testing.T) {
	if _, err := buspolicy.Permissions("root"); !errors.Is(err, buspolicy.ErrUnknownUser) {
		t.Errorf("Permissions(root) error = %v, want ErrUnknownUser", err)
	}
	if _, err := buspolicy.Users(map[string]string{"root": "x"}); !errors.Is(err, buspolicy.ErrUnknownUser) {
		t.Errorf("Users(root) error = %v, want ErrUnknownUser", err)
	}
	if err := buspolicy.WriteAuthorization(new(bytes.Buffer), []string{"root"}, buspolicy.DefaultEnvPrefix); !errors.Is(err, buspolicy.ErrUnknownUser) {
		t.Errorf("WriteAuthorization(root) error = %v, want ErrUnknownUser", err)
	}
}
