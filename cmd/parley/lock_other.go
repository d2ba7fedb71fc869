//go:build !unix

package main

import (
	"errors"
	"os"
)

// flockExclusive fails where there is no flock(2): parley refuses to share
// a data dir it cannot lock.
func flockExclusive(*os.File) error {
	return errors.New("locking a data dir needs flock(2), which this platform lacks")
}
