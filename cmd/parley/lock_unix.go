//go:build unix

package main

import (
	"errors"
	"os"
	"syscall"
)

// flockExclusive locks f with flock(2), exclusive and without waiting: a
// lock held on the file's description, released when the last descriptor
// of it closes, which the kernel does when the process dies.
func flockExclusive(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errDataDirInUse
	}
	return err
}
