package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// parleyArgsEnv holds the arguments, one a line, with which the test
// binary runs as parley instead of running tests; see startParleyProcess.
const parleyArgsEnv = "PARLEY_TEST_PROCESS_ARGS"

// TestParleyProcess is parley's main when the test binary is started by
// startParleyProcess, so a test can kill a real process.
func TestParleyProcess(t *testing.T) {
	args, ok := os.LookupEnv(parleyArgsEnv)
	if !ok {
		t.Skip("runs only as a process started by startParleyProcess")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr)
	stop()
	os.Exit(exitStatus(err, os.Stderr))
}

// startParleyProcess runs `parley all` on dir in a process of its own and
// returns it, and its API's base URL once it is ready. The process is
// killed when the test ends.
func startParleyProcess(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	args := []string{"all", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--clickhouse", "off"}
	cmd := exec.Command(os.Args[0], "-test.run=^TestParleyProcess$")
	cmd.Env = append(os.Environ(), parleyArgsEnv+"="+strings.Join(args, "\n"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if url, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "API:"); ok {
				urls <- strings.TrimSpace(url)
			}
		}
	}()
	select {
	case url := <-urls:
		waitReady(t, url)
		return cmd, url
	case <-time.After(60 * time.Second):
		t.Fatalf("parley all did not start within a minute; its log:\n%s", stderr.String())
	}
	return nil, ""
}

// TestDataDirOwnedByOneProcess runs parley all in a process of its own and
// points every other command that writes the data dir at the same dir: each
// is refused at once, naming the owner's pid, and the owner goes on
// unharmed. Once the owner is killed with SIGKILL, leaving no chance to
// clean up, a new parley all starts on the dir.
func TestDataDirOwnedByOneProcess(t *testing.T) {
	dir := t.TempDir()
	owner, base := startParleyProcess(t, dir)
	passwordFile := filepath.Join(dir, natsAdminPasswordFile)
	password, err := os.ReadFile(passwordFile)
	if err != nil {
		t.Fatal(err)
	}
	ownerPID := fmt.Sprintf("pid %d", owner.Process.Pid)

	tests := []struct {
		name string
		args []string
	}{
		{"all", []string{"all", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--clickhouse", "off"}},
		{"keys rotate", []string{"keys", "rotate", "--data-dir", dir}},
		{"streams apply", []string{"streams", "apply", "--data-dir", dir}},
		{"audit verify", []string{"audit", "verify", "--tenant", "demo", "--data-dir", dir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A command not refused would run (parley all: until the
			// deadline), which the checks below catch.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			err := run(ctx, tt.args, &out, &errOut)
			if !errors.Is(err, errDataDirInUse) || !strings.Contains(err.Error(), ownerPID) {
				t.Errorf("parley %s = %v, want it refused naming %s", tt.name, err, ownerPID)
			}
			if status := exitStatus(err, &errOut); status == 0 {
				t.Errorf("parley %s exits with status 0, want non-zero", tt.name)
			}
		})
	}
	// Nothing was written: keys rotate made no new KEK, the second parley
	// all no new admin password.
	if _, err := os.Stat(filepath.Join(dir, "kek.key"+nextKEKSuffix)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("kek.key%s while parley all runs: err = %v, want none written", nextKEKSuffix, err)
	}
	if now, err := os.ReadFile(passwordFile); err != nil || !bytes.Equal(now, password) {
		t.Errorf("%s changed while its owner runs (err %v)", natsAdminPasswordFile, err)
	}
	// The owner is unharmed.
	newVisitor(t, base, "demo")
	if status, _ := call(t, base, "GET", "/healthz", "", nil); status != http.StatusOK {
		t.Errorf("owner's /healthz = %d, want 200", status)
	}

	if err := owner.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	a, _ := testAll(t, dir)
	newVisitor(t, a.URL(), "demo")
}
