// Package keyring is the privacy service's domain of subject keys: the
// key-encryption key (KEK) and the wrapping of every data subject's data
// key and pseudonym key under it.
//
// A wrapped key is bound by its associated data to its tenant, its subject,
// the KEK that wrapped it and which of the two keys it is, so a record copied
// to another subject, or its two halves swapped, never unwraps.
package keyring

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/seal"
)

// Errors of the key store and of Unwrap.
var (
	// ErrNotFound means the subject has no keys: never created, erased or expired.
	ErrNotFound = errors.New("subject has no keys")
	// ErrExists means the subject's keys were created by another writer first.
	ErrExists = errors.New("subject keys already exist")
	// ErrUnknownKEK means a record was wrapped by a KEK other than the ring's.
	ErrUnknownKEK = errors.New("keys wrapped by another key-encryption key")
	// ErrErased means the subject was erased: in place of their keys the
	// store holds a Tombstone, and no keys are ever created for them again.
	ErrErased = errors.New("subject erased")
	// ErrRotating means a rotation of the KEK is under way: no key is
	// wrapped until it completes.
	ErrRotating = errors.New("a key-encryption key rotation is under way")
	// ErrKEKRetired means the ring's KEK is not the one in force: a
	// rotation replaced it, or the instance was started with a wrong one.
	// A key wrapped under it would be lost to the service, so none is.
	ErrKEKRetired = errors.New("this key-encryption key is not the one in force")
)

// Tombstone takes the place of an erased subject's record in the key store.
// It holds no key.
type Tombstone struct {
	ErasureID string    `json:"erasure_id"`
	ErasedAt  time.Time `json:"erased_at"`
	// KeysDestroyed says whether the erasure destroyed a record; false when
	// there was none left.
	KeysDestroyed bool `json:"keys_destroyed"`
}

// Names of the two wrapped keys, part of each wrap's associated data.
const (
	wrapData      = "data"
	wrapPseudonym = "pseudonym"
)

// Record is a subject's keys as stored: each wrapped under the KEK named by
// KEKID. It holds no key in clear.
type Record struct {
	KEKID     string    `json:"kek_id"`
	Data      []byte    `json:"data"`
	Pseudonym []byte    `json:"pseudonym"`
	CreatedAt time.Time `json:"created_at"`
}

// Ring wraps and unwraps subject keys under one KEK. It is safe for
// concurrent use.
type Ring struct {
	kek seal.Key
	id  string
}

// New returns a ring for kek.
func New(kek seal.Key) *Ring {
	return &Ring{kek: kek, id: Fingerprint(kek)}
}

// Fingerprint names a KEK without revealing it: the hex of the first 8 bytes
// of its SHA-256, a one-way function of 32 random bytes, so it gives away
// nothing that helps find them. Records carry it, and the KEYS stream's KEK
// state, so that a KEK rotation can tell which records are still wrapped
// under the old key and an instance holding a KEK not in force wraps none.
func Fingerprint(kek seal.Key) string {
	sum := sha256.Sum256(kek[:])
	return hex.EncodeToString(sum[:8])
}

// KEKID returns the fingerprint of the ring's KEK.
func (r *Ring) KEKID() string { return r.id }

// NewKeys generates fresh keys for a subject and wraps them. It returns the
// keys in clear for the caller to use, and the record to store.
func (r *Ring) NewKeys(tenant, subject string, at time.Time) (personkey.Keys, Record, error) {
	var k personkey.Keys
	var err error
	if k.Data, err = seal.NewKey(); err != nil {
		return personkey.Keys{}, Record{}, err
	}
	if k.Pseudonym, err = seal.NewKey(); err != nil {
		return personkey.Keys{}, Record{}, err
	}
	rec, err := r.Wrap(tenant, subject, k, at)
	if err != nil {
		return personkey.Keys{}, Record{}, err
	}
	return k, rec, nil
}

func (r *Ring) wrap(tenant, subject, which string, key []byte) ([]byte, error) {
	b, err := seal.Seal(r.kek, key, r.ad(tenant, subject, which))
	if err != nil {
		return nil, fmt.Errorf("wrap %s key: %w", which, err)
	}
	return b, nil
}

// Unwrap returns the keys in rec, stored for tenant's subject. It returns
// ErrUnknownKEK when rec was wrapped under another KEK, and an error
// wrapping seal.ErrOpen when rec was altered or belongs to another subject;
// it never returns keys that were not wrapped for this subject.
func (r *Ring) Unwrap(tenant, subject string, rec Record) (personkey.Keys, error) {
	if rec.KEKID != r.id {
		return personkey.Keys{}, fmt.Errorf("unwrap keys of %s/%s: kek %s: %w", tenant, subject, rec.KEKID, ErrUnknownKEK)
	}
	var k personkey.Keys
	var err error
	if k.Data, err = r.unwrap(tenant, subject, wrapData, rec.Data); err != nil {
		return personkey.Keys{}, err
	}
	if k.Pseudonym, err = r.unwrap(tenant, subject, wrapPseudonym, rec.Pseudonym); err != nil {
		return personkey.Keys{}, err
	}
	return k, nil
}

func (r *Ring) unwrap(tenant, subject, which string, wrapped []byte) (seal.Key, error) {
	b, err := seal.Open(r.kek, wrapped, r.ad(tenant, subject, which))
	if err != nil {
		return seal.Key{}, fmt.Errorf("unwrap %s key of %s/%s: %w", which, tenant, subject, err)
	}
	k, err := seal.KeyFromBytes(b)
	if err != nil {
		return seal.Key{}, fmt.Errorf("unwrap %s key of %s/%s: %w", which, tenant, subject, err)
	}
	return k, nil
}

func (r *Ring) ad(tenant, subject, which string) []byte {
	return seal.AD("parley-key", tenant, subject, r.id, which)
}

// SealSecret seals an integration's signing secret under the KEK, bound to
// tenant and id, so that a copy of the INTEGRATIONS bucket alone (a backup)
// signs nothing.
func (r *Ring) SealSecret(tenant, id string, secret []byte) ([]byte, error) {
	b, err := seal.Seal(r.kek, secret, r.secretAD(tenant, id))
	if err != nil {
		return nil, fmt.Errorf("seal secret of integration %s/%s: %w", tenant, id, err)
	}
	return b, nil
}

// OpenSecret opens what SealSecret sealed for tenant's integration id
// under this ring's KEK, kekID being the KEK the record names.
func (r *Ring) OpenSecret(tenant, id, kekID string, sealed []byte) ([]byte, error) {
	if kekID != r.id {
		return nil, fmt.Errorf("open secret of integration %s/%s: kek %s: %w", tenant, id, kekID, ErrUnknownKEK)
	}
	b, err := seal.Open(r.kek, sealed, r.secretAD(tenant, id))
	if err != nil {
		return nil, fmt.Errorf("open secret of integration %s/%s: %w", tenant, id, err)
	}
	return b, nil
}

func (r *Ring) secretAD(tenant, id string) []byte {
	return seal.AD("parley-integration-secret", tenant, id, r.id)
}
