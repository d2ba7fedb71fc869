package keyring

import (
	"time"

	"github.com/parley-chat/parley/pkg/personkey"
)

// Wrap wraps a subject's existing keys under the ring's KEK: how a KEK
// rotation moves a record from the old ring to the new one. createdAt is
// kept from the record being replaced.
func (r *Ring) Wrap(tenant, subject string, k personkey.Keys, createdAt time.Time) (Record, error) {
	rec := Record{KEKID: r.id, CreatedAt: createdAt.UTC()}
	var err error
	if rec.Data, err = r.wrap(tenant, subject, wrapData, k.Data[:]); err != nil {
		return Record{}, err
	}
	if rec.Pseudonym, err = r.wrap(tenant, subject, wrapPseudonym, k.Pseudonym[:]); err != nil {
		return Record{}, err
	}
	return rec, nil
}
