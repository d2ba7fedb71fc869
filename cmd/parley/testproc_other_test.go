//go:build !linux

package main

import "syscall"

// testProcAttr has nothing to add where there is no parent-death signal.
func testProcAttr() *syscall.SysProcAttr { return nil }
