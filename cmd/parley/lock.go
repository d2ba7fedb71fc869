package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// dataDirLockFile, under a data dir, is what the one process owning the dir
// holds locked (flock, exclusive) for as long as it runs. It names the
// owner, its pid and command line, so that a process refused can say who
// holds the dir. The file stays when the owner stops: removing it would let
// a newcomer lock a fresh file while a late process still holds the old one.
const dataDirLockFile = "parley.lock"

// errDataDirInUse is returned by lockDataDir when another process owns the
// data dir.
var errDataDirInUse = errors.New("data dir in use")

// dirLock is the exclusive lock on a data dir, held until Close or until the
// process ends, however it ends: the kernel releases it then, so a crash
// never leaves a stale lock behind.
type dirLock struct{ f *os.File }

// lockDataDir takes the exclusive lock on dir, which must exist, before
// anything in it is written: every command that writes there or opens its
// store takes it (parley all; keys rotate, streams apply and audit verify
// with --data-dir), as two processes sharing one JetStream store lose each
// other's acknowledged messages. It never waits: when another process holds
// the lock it returns an error wrapping errDataDirInUse that names that
// process.
func lockDataDir(dir string) (*dirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, dataDirLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := flockExclusive(f); err != nil {
		owner, _ := io.ReadAll(io.LimitReader(f, 4096))
		f.Close()
		if errors.Is(err, errDataDirInUse) {
			return nil, fmt.Errorf("%w: %s is owned by another process (%s); stop it first, or pass another --data-dir",
				errDataDirInUse, dir, describeOwner(owner))
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	owner := fmt.Sprintf("pid %d: %s\n", os.Getpid(), strings.Join(os.Args, " "))
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if _, err := f.WriteAt([]byte(owner), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return &dirLock{f: f}, nil
}

// describeOwner is the owner as its lock file names it; the file is empty
// for the moment between the owner's lock and its write.
func describeOwner(content []byte) string {
	if s := strings.TrimSpace(string(content)); s != "" {
		return s
	}
	return "it has not written its pid yet"
}

// Close releases the lock.
func (l *dirLock) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}
