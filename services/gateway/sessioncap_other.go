//go:build !unix

package gateway

// sessionCap is 0, no bound, where the open-file limit cannot be read.
func sessionCap() int { return 0 }
