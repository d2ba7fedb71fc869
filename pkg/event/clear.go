package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// NewClear returns the envelope of a new event whose Body is payload as plain
// JSON, not sealed.
//
// Clear envelopes are only for events that hold no personal data: the
// consent and erasure records of the PRIVACY stream, which must stay
// readable as legal evidence after the subject's key is destroyed. Anything a
// person wrote or that identifies them goes through New.
func NewClear(typ Type, tenant, subject, aggregate string, at time.Time, payload any) (Envelope, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return Envelope{ID: NewID(), Type: typ, Tenant: tenant, Person: subject, Aggregate: aggregate, At: at.UTC(), Body: body}, nil
}

// Decode reads the plain JSON body of a clear envelope (see NewClear) into v.
func (e Envelope) Decode(v any) error {
	if err := json.Unmarshal(e.Body, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", e.Type, e.ID, err)
	}
	return nil
}
