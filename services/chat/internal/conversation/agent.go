package conversation

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// Errors of assigning by presence and capacity. Their messages reach API
// clients.
var (
	// ErrAgentAway means the agent set their presence to away.
	ErrAgentAway = errors.New("the agent is away; a supervisor or admin may assign with override")
	// ErrAgentFull means the agent holds as many open conversations as
	// their capacity.
	ErrAgentFull = errors.New("the agent is at capacity; a supervisor or admin may assign with override")
)

// Presence is whether an agent takes conversations.
type Presence string

// The presences, as the API names them. An agent who never set one is
// Online: assigning works as it did before presence existed.
const (
	Online Presence = chatapi.PresenceOnline
	Away   Presence = chatapi.PresenceAway
)

// Availability is what assigning to an agent goes by.
type Availability struct {
	// Presence is what the agent last set; "" until they set one, which
	// counts as Online.
	Presence Presence
	// PresenceAt is when they set it.
	PresenceAt time.Time
	// MaxOpen bounds the open conversations assigned to them; nil means
	// no bound.
	MaxOpen *int
}

// Takes reports whether a conversation may be assigned to the agent, who
// holds open conversations assigned already: not while away, unless the
// agent takes it themself (which shows they are there), nor at capacity.
func (a Availability) Takes(open int, themself bool) error {
	if a.Presence == Away && !themself {
		return ErrAgentAway
	}
	if a.MaxOpen != nil && open >= *a.MaxOpen {
		return ErrAgentFull
	}
	return nil
}

// ParsePresence checks a presence an agent sets.
func ParsePresence(s string) (Presence, error) {
	switch p := Presence(s); p {
	case Online, Away:
		return p, nil
	}
	return "", &ValidationError{Field: "status", Reason: "want online or away"}
}

// CheckCapacity checks a capacity: nil (no bound) or 0 to
// chatapi.MaxCapacity.
func CheckCapacity(maxOpen *int) error {
	if maxOpen != nil && (*maxOpen < 0 || *maxOpen > chatapi.MaxCapacity) {
		return &ValidationError{Field: "max_open", Reason: fmt.Sprintf("must be 0 to %d, or null", chatapi.MaxCapacity)}
	}
	return nil
}

// CanSetPresence reports whether p may set their own presence: agents,
// who are assigned conversations.
func CanSetPresence(p auth.Principal) error {
	if p.Role != auth.RoleAgent {
		return ErrForbidden
	}
	return nil
}

// CanManageAgents reports whether p may set agents' capacity and override
// their presence and capacity when assigning: supervisors and admins.
func CanManageAgents(p auth.Principal) error {
	if p.Role != auth.RoleSupervisor && p.Role != auth.RoleAdmin {
		return ErrForbidden
	}
	return nil
}

// CanSeeAgent reports whether p may read agent's availability: the agent
// themself, supervisors and admins of the tenant.
func CanSeeAgent(p auth.Principal, agent string) error {
	if p.Role == auth.RoleAgent && p.ID == agent {
		return nil
	}
	return CanManageAgents(p)
}
