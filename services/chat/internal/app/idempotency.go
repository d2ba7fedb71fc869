package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// ErrKeyReused means an idempotency key came back with other arguments, or
// on another command, than the request that first used it.
var ErrKeyReused = errors.New("the Idempotency-Key was used for a different request")

// idempotency is what a request's idempotency key derives. The event the
// request is about carries hash (Envelope.Idempotency), so that the read
// models, rebuilt from the stream by every instance, find it again; and the
// ids it stores are derived from hash, so that a repeated request publishes
// the same Nats-Msg-Id and JetStream's duplicate window drops it. The zero
// value is a request without a key.
type idempotency struct {
	hash string
	// same tells whether prior, the event stored under the same key, is
	// this request's (nil) or another's (ErrKeyReused).
	same func(ctx context.Context, prior Record) error
}

// idempotencyOf returns the idempotency of p's request with key, which
// same checks a prior event against; the zero value when key is empty.
func idempotencyOf(p auth.Principal, key string, same func(context.Context, Record) error) (idempotency, error) {
	if key == "" {
		return idempotency{}, nil
	}
	if !chatapi.ValidIdempotencyKey(key) {
		return idempotency{}, &conversation.ValidationError{Field: "idempotency_key", Reason: "want 1-128 printable ASCII characters without spaces"}
	}
	// The principal is part of the hash: keys are chosen by clients, and
	// one client's key must never find another's request. The hash never
	// reveals the key.
	sum := sha256.Sum256([]byte(strings.Join([]string{"parley-idempotency-v1", p.Tenant, string(p.Role), p.ID, key}, "\x00")))
	return idempotency{hash: hex.EncodeToString(sum[:16]), same: same}, nil
}

// id returns the id of what the request stores as label: derived from the
// key, or new without one.
func (k idempotency) id(label string) string {
	if k.hash == "" {
		return event.NewID()
	}
	return event.DerivedID(k.hash + "/" + label)
}

// repeat answers a request whose key already stored prior: prior, when it
// was this request, or ErrKeyReused.
func (k idempotency) repeat(ctx context.Context, prior Record) ([]Record, error) {
	if err := k.same(ctx, prior); err != nil {
		return nil, err
	}
	return []Record{prior}, nil
}

// openPrior decodes prior, an event stored under a request's key, into v,
// or returns ErrKeyReused when it is not of type typ.
func (s *Service) openPrior(ctx context.Context, prior Record, typ event.Type, v any) error {
	if prior.Event.Type != typ {
		return ErrKeyReused
	}
	keys, err := s.visitorKeys(ctx, prior.Event.Tenant, prior.Event.Person)
	if err != nil {
		return err
	}
	if err := prior.Event.Open(keys.Data, v); err != nil {
		return fmt.Errorf("prior event of the idempotency key: %w", err)
	}
	return nil
}

// keyIndex finds the messages of one conversation stored by requests with
// an idempotency key, by the key's hash (event.Envelope.Idempotency), in
// bounded memory: the last recentKeys exactly, the older ones in a Bloom
// filter that tells which hashes need the store read (see Service.prior).
// A key is honoured as long as its message is kept, so the older ones
// cannot simply be forgotten; a conversation without keys holds nothing.
type keyIndex struct {
	Recent []keyedMessage `json:"recent,omitempty"` // a ring once full, Next is its oldest
	Next   int            `json:"next,omitempty"`
	Older  *bloom         `json:"older,omitempty"`
	// OlderUpTo is the sequence of the newest message that left Recent.
	OlderUpTo uint64 `json:"older_up_to,omitempty"`
}

type keyedMessage struct {
	Hash string `json:"hash"`
	Seq  uint64 `json:"seq"`
}

// recentKeys is how many keyed messages a conversation indexes exactly:
// more than a client retries at once.
const recentKeys = 16

// add indexes the message at seq stored with the key of hash.
func (x *keyIndex) add(hash string, seq uint64) {
	if len(x.Recent) < recentKeys {
		x.Recent = append(x.Recent, keyedMessage{hash, seq})
		return
	}
	old := x.Recent[x.Next]
	if x.Older == nil {
		x.Older = new(bloom)
	}
	x.Older.add(old.Hash)
	x.OlderUpTo = max(x.OlderUpTo, old.Seq)
	x.Recent[x.Next] = keyedMessage{hash, seq}
	x.Next = (x.Next + 1) % recentKeys
}

// find returns the sequence of the message of hash when it is among the
// recent ones, or else the sequence up to which the store may hold it (0:
// it does not). A withdrawn message is indexed twice, by its posting and by
// its withdrawal, which carries the key's hash (Service.Withdraw): find
// returns the withdrawal, the later, since the store deletes the posting.
func (x *keyIndex) find(hash string) (seq uint64, ok bool, upTo uint64) {
	for _, m := range x.Recent {
		if m.Hash == hash && m.Seq > seq {
			seq, ok = m.Seq, true
		}
	}
	if ok {
		return seq, true, 0
	}
	if x.Older != nil && x.Older.has(hash) {
		return 0, false, x.OlderUpTo
	}
	return 0, false, 0
}

// bloom is a Bloom filter of bloomBits bits with three hash functions: at
// 100 older keys in a conversation, a new key reads the store in about one
// case in a hundred.
type bloom [bloomBits / 64]uint64

const bloomBits = 2048

func (b *bloom) add(hash string) {
	for _, i := range bloomIndexes(hash) {
		b[i/64] |= 1 << (i % 64)
	}
}

func (b *bloom) has(hash string) bool {
	for _, i := range bloomIndexes(hash) {
		if b[i/64]&(1<<(i%64)) == 0 {
			return false
		}
	}
	return true
}

// bloomIndexes derives the filter's three bits of hash by double hashing.
func bloomIndexes(hash string) [3]uint64 {
	h := fnv.New64a()
	h.Write([]byte(hash))
	sum := h.Sum64()
	h1, h2 := sum&math.MaxUint32, sum>>32|1
	return [3]uint64{h1 % bloomBits, (h1 + h2) % bloomBits, (h1 + 2*h2) % bloomBits}
}

// prior returns the message stored in e's conversation by the request whose
// idempotency key hashes to hash, or the withdrawal of that message, if the
// store holds one; never for the empty hash.
func (s *Service) prior(ctx context.Context, e *entry, hash string) (Record, bool, error) {
	if hash == "" {
		return Record{}, false, nil
	}
	e.mu.RLock()
	c := e.conv
	seq, ok, upTo := e.keyed.find(hash)
	e.mu.RUnlock()
	var (
		prior Record
		found bool
	)
	switch {
	case ok:
		// One event from just before it: the read starts after its cursor.
		err := s.scan(ctx, c.Tenant, c.ID, seq-1, 1, func(r Record) (bool, error) {
			prior, found = r, r.Seq == seq
			return false, nil
		})
		return prior, found, err
	case upTo > 0:
		err := s.scan(ctx, c.Tenant, c.ID, 0, readBatch, func(r Record) (bool, error) {
			if isMessage(r.Event) && r.Event.Idempotency == hash {
				prior, found = r, true
			}
			return !found && r.Seq < upTo, nil
		})
		return prior, found, err
	}
	return Record{}, false, nil
}

// readBatch is how many events a read of a whole conversation asks for at
// a time.
const readBatch = 256
