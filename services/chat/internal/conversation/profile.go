package conversation

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// ErrNoProfile means the visitor gave no profile, or removed it.
var ErrNoProfile = errors.New("no profile: the visitor gave none")

// CheckProfile returns the profile visitor p gives themself as the rules
// take it: a name of 1 to chatapi.MaxNameRunes printable characters
// (spaces around it trimmed), an e-mail address that net/mail reads as a
// bare address, at most one of them empty. Only a visitor has a profile,
// and only they set it.
func CheckProfile(p auth.Principal, args chatapi.ProfileArgs) (chatapi.ProfileArgs, error) {
	if p.Role != auth.RoleVisitor {
		return args, ErrForbidden
	}
	name, email := strings.TrimSpace(args.Name), strings.TrimSpace(args.Email)
	switch {
	case name == "" && email == "":
		return args, &ValidationError{Field: "name", Reason: "give a name, an email or both; to remove the profile, delete it"}
	case !utf8.ValidString(name):
		return args, &ValidationError{Field: "name", Reason: "not valid UTF-8"}
	case utf8.RuneCountInString(name) > chatapi.MaxNameRunes:
		return args, &ValidationError{Field: "name", Reason: fmt.Sprintf("longer than %d characters", chatapi.MaxNameRunes)}
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0:
		return args, &ValidationError{Field: "name", Reason: "holds a control or other unprintable character"}
	case len(email) > chatapi.MaxEmailBytes:
		return args, &ValidationError{Field: "email", Reason: fmt.Sprintf("longer than %d bytes", chatapi.MaxEmailBytes)}
	}
	if email != "" {
		// A bare address only: "Ada <ada@example.com>" would smuggle a
		// second name past the name's rules.
		a, err := mail.ParseAddress(email)
		if err != nil || a.Name != "" || a.Address != email {
			return args, &ValidationError{Field: "email", Reason: "not an e-mail address such as name@example.com"}
		}
	}
	return chatapi.ProfileArgs{Name: name, Email: email}, nil
}
