package rpc

import (
	"maps"
	"slices"
	"strings"
	"sync"
)

// Health is what a service's pings answer: well while each of its
// background parts (a consumer, a watch) works, else why not. The zero
// value is well; it is safe for concurrent use.
type Health struct {
	mu      sync.Mutex
	failing map[string]error
}

// Set records the state of part: err while it fails, nil once it works.
func (h *Health) Set(part string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.failing, part)
		return
	}
	if h.failing == nil {
		h.failing = make(map[string]error)
	}
	h.failing[part] = err
}

// Of returns the function that sets part's state, for the part to call.
func (h *Health) Of(part string) func(error) {
	return func(err error) { h.Set(part, err) }
}

// Err returns nil when every part works, else an *Error with
// CodeUnavailable naming each failing part and why, in the order of their
// names.
func (h *Health) Err() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failing) == 0 {
		return nil
	}
	parts := slices.Sorted(maps.Keys(h.failing))
	msgs := make([]string, len(parts))
	for i, p := range parts {
		msgs[i] = p + ": " + h.failing[p].Error()
	}
	return Errorf(CodeUnavailable, "not ready: %s", strings.Join(msgs, "; "))
}
