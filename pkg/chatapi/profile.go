package chatapi

import "time"

// The profile subjects: a visitor's own name and e-mail, which only they
// give, change and remove, sealed under their key; shown with their
// conversations (Summary.VisitorProfile, MessagesResult.VisitorProfile)
// and in their export (ExportResult.Profile). The principal must be a
// visitor; each call is about themself.
const (
	// ProfilePutSubject sets the caller's profile: ProfileArgs → Profile.
	// Errors: rpc.CodeInvalid naming the field for a bad name or e-mail, or
	// neither given; rpc.CodeGone once the visitor is erased.
	ProfilePutSubject = "parley.chat.profile.put"
	// ProfileGetSubject answers the caller's profile: struct{} → Profile.
	// Errors: rpc.CodeNotFound when they gave none.
	ProfileGetSubject = "parley.chat.profile.get"
	// ProfileDeleteSubject removes the caller's profile, every stored
	// version of it overwritten: struct{} → struct{}. Removing none is no
	// error.
	ProfileDeleteSubject = "parley.chat.profile.delete"
)

// Limits of a profile.
const (
	// MaxNameRunes is the longest name accepted, in characters.
	MaxNameRunes = 100
	// MaxEmailBytes is the longest e-mail address accepted (RFC 5321's
	// bound on a path).
	MaxEmailBytes = 254
)

// ProfileArgs is the profile a visitor gives themself: a name, an e-mail
// address, or both; an empty one is not given.
type ProfileArgs struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

// Profile is a visitor's profile as they gave it, and when.
type Profile struct {
	Name      string    `json:"name,omitempty"`
	Email     string    `json:"email,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}
