package memory

import (
	"context"
	"strings"
	"sync"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/stream"
)

// ChatLog is an app.ChatLog holding a CHAT stream in memory, which tests
// append to. It is safe for concurrent use.
type ChatLog struct {
	mu     sync.Mutex
	events []event.Envelope // events[i] has sequence i+1
}

// Append stores e on its conversation's subject and returns its sequence.
func (l *ChatLog) Append(e event.Envelope) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	return uint64(len(l.events))
}

// LastSeq returns the sequence of the last event; 0 when there is none.
func (l *ChatLog) LastSeq(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.events)), nil
}

// Read calls each with the events on subjects matching filter after
// sequence after, in order, until each returns false or an error.
func (l *ChatLog) Read(_ context.Context, filter string, after uint64, each func(seq uint64, e event.Envelope) (bool, error)) error {
	for seq := after + 1; ; seq++ {
		l.mu.Lock()
		if seq > uint64(len(l.events)) {
			l.mu.Unlock()
			return nil
		}
		e := l.events[seq-1]
		l.mu.Unlock()
		if !matches(filter, stream.ChatSubject(e.Tenant, e.Aggregate)) {
			continue
		}
		if more, err := each(seq, e); err != nil || !more {
			return err
		}
	}
}

// matches reports whether the NATS subject s matches filter, whose "*"
// tokens match any one token.
func matches(filter, s string) bool {
	f, t := strings.Split(filter, "."), strings.Split(s, ".")
	if len(f) != len(t) {
		return false
	}
	for i := range f {
		if f[i] != "*" && f[i] != t[i] {
			return false
		}
	}
	return true
}
