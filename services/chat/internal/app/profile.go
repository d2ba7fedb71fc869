package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/time/rate"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// ProfileStore keeps the visitors' profiles, each sealed by the caller
// under the visitor's key. Only the latest version of a profile may be
// left in the store: what a visitor changed or removed must not be
// recoverable from it.
type ProfileStore interface {
	// Save stores sealed as the visitor's profile, then removes every
	// older version, overwriting its bytes where the store keeps them on
	// disk.
	Save(ctx context.Context, tenant, visitor string, sealed []byte) error
	// Load returns the latest sealed profile of each of visitors of tenant
	// that has one.
	Load(ctx context.Context, tenant string, visitors []string) (map[string][]byte, error)
	// Remove removes every version of the visitor's profile, overwriting
	// its bytes; a visitor without one is no error.
	Remove(ctx context.Context, tenant, visitor string) error
	// Visitors calls fn with the tenant and id of each visitor that has a
	// profile, in no particular order, and stops at fn's first error,
	// which it returns.
	Visitors(ctx context.Context, fn func(tenant, visitor string) error) error
}

// errNoProfiles is the profile calls of a Service started without a
// ProfileStore.
var errNoProfiles = errors.New("profiles are not kept by this chat service")

// PutProfile sets the profile the visitor p gives themself, replacing the
// one before, of which nothing is left in the store.
func (s *Service) PutProfile(ctx context.Context, p auth.Principal, args chatapi.ProfileArgs) (chatapi.Profile, error) {
	args, err := conversation.CheckProfile(p, args)
	if err != nil {
		return chatapi.Profile{}, err
	}
	if s.profiles == nil {
		return chatapi.Profile{}, errNoProfiles
	}
	keys, err := s.visitorKeys(ctx, p.Tenant, p.ID)
	if err != nil {
		return chatapi.Profile{}, err
	}
	pr := chatapi.Profile{Name: args.Name, Email: args.Email, UpdatedAt: s.now().UTC()}
	pt, err := json.Marshal(pr)
	if err != nil {
		return chatapi.Profile{}, fmt.Errorf("encode profile: %w", err)
	}
	sealed, err := seal.Seal(keys.Data, pt, profileAD(p.Tenant, p.ID))
	if err != nil {
		return chatapi.Profile{}, fmt.Errorf("seal profile: %w", err)
	}
	if err := s.profiles.Save(ctx, p.Tenant, p.ID, sealed); err != nil {
		return chatapi.Profile{}, err
	}
	return pr, nil
}

// GetProfile answers the profile the visitor p gave themself, or
// conversation.ErrNoProfile.
func (s *Service) GetProfile(ctx context.Context, p auth.Principal, _ struct{}) (chatapi.Profile, error) {
	if p.Role != auth.RoleVisitor {
		return chatapi.Profile{}, conversation.ErrForbidden
	}
	if _, err := s.visitorKeys(ctx, p.Tenant, p.ID); err != nil {
		return chatapi.Profile{}, err
	}
	pr, err := s.profilesOf(ctx, p.Tenant, []string{p.ID})
	if err != nil {
		return chatapi.Profile{}, err
	}
	if pr[p.ID] == nil {
		return chatapi.Profile{}, conversation.ErrNoProfile
	}
	return *pr[p.ID], nil
}

// DeleteProfile removes the profile of the visitor p, every version of it
// overwritten in the store.
func (s *Service) DeleteProfile(ctx context.Context, p auth.Principal, _ struct{}) (struct{}, error) {
	if p.Role != auth.RoleVisitor {
		return struct{}{}, conversation.ErrForbidden
	}
	return struct{}{}, s.ForgetProfile(ctx, p.Tenant, p.ID)
}

// ForgetProfile removes the visitor's profile: their own removal, or their
// erasure, after which it could not be read anyway.
func (s *Service) ForgetProfile(ctx context.Context, tenant, visitor string) error {
	if s.profiles == nil {
		return nil
	}
	return s.profiles.Remove(ctx, tenant, visitor)
}

// sweepRate bounds how many visitors a second ForgetErasedProfiles asks
// the key service about: a start with 100,000 profiles spreads its
// questions over about eight minutes instead of sending them at once.
const sweepRate = 200

// Retry runs fn until it succeeds or ctx is done, when it returns ctx's
// error; what names fn in the log, with attrs. jetstream.Store.Retry is one.
type Retry func(ctx context.Context, what string, fn func(context.Context) error, attrs ...any) error

// ForgetErasedProfiles removes the profiles of erased visitors that are
// left in the store: their erasure's broadcast came while no instance
// ran, or the removal it asked for was cut short by a stop. Run at start,
// it completes those erasures; a read of such a profile also removes it
// (profilesOf).
//
// It asks the key service whether each visitor with a profile was
// erased, at most sweepRate a second, and caches no keys. Only an erasure
// removes a profile: keys missing for another reason (a key store restored
// empty, a replica behind) may come back. A failure that may pass (the
// key service or the store unavailable) is tried again by again, for that
// visitor only, before the next is asked about (the key service
// unavailable is so for every visitor); a visitor whose answer asking
// again would not change is skipped and left to the next start. It returns
// how many profiles it removed and how many visitors it skipped, the
// store's error when the visitors cannot be listed, and ctx's when it ends.
func (s *Service) ForgetErasedProfiles(ctx context.Context, again Retry) (removed, skipped int, err error) {
	if s.profiles == nil {
		return 0, 0, nil
	}
	pace := rate.NewLimiter(sweepRate, 1)
	err = s.profiles.Visitors(ctx, func(tenant, visitor string) error {
		if err := pace.Wait(ctx); err != nil {
			return err
		}
		return again(ctx, "remove an erased visitor's profile", func(ctx context.Context) error {
			erased, err := s.forgetIfErased(ctx, tenant, visitor)
			switch {
			case err != nil && ctx.Err() == nil && rpc.CodeOf(err) != rpc.CodeUnavailable:
				skipped++
				return nil
			case erased:
				removed++
			}
			return err
		})
	})
	return removed, skipped, err
}

// forgetIfErased removes the visitor's profile if they were erased, and
// reports whether it did.
func (s *Service) forgetIfErased(ctx context.Context, tenant, visitor string) (bool, error) {
	erased, err := s.keys.Erased(ctx, tenant, visitor)
	if err != nil || !erased {
		return false, err
	}
	if err := s.profiles.Remove(ctx, tenant, visitor); err != nil {
		return false, err
	}
	return true, nil
}

// profilesOf returns the profiles of those of visitors of tenant that gave
// one and have keys, in one read of the store. A profile left by a
// visitor erased while no chat instance ran is removed on the way; one
// whose visitor's keys are missing for another reason is not shown, but
// kept, as those keys may come back.
func (s *Service) profilesOf(ctx context.Context, tenant string, visitors []string) (map[string]*chatapi.Profile, error) {
	out := make(map[string]*chatapi.Profile)
	if s.profiles == nil || len(visitors) == 0 {
		return out, nil
	}
	sealed, err := s.profiles.Load(ctx, tenant, visitors)
	if err != nil {
		return nil, err
	}
	for visitor, b := range sealed {
		keys, err := s.keys.Get(ctx, tenant, visitor)
		switch {
		case errors.Is(err, personkey.ErrErased):
			if err := s.profiles.Remove(ctx, tenant, visitor); err != nil {
				return nil, err
			}
			continue
		case errors.Is(err, personkey.ErrNotFound):
			continue
		case err != nil:
			return nil, fmt.Errorf("visitor keys: %w", err)
		}
		pt, err := seal.Open(keys.Data, b, profileAD(tenant, visitor))
		if err != nil {
			return nil, fmt.Errorf("open profile: %w", err)
		}
		var pr chatapi.Profile
		if err := json.Unmarshal(pt, &pr); err != nil {
			return nil, fmt.Errorf("decode profile: %w", err)
		}
		out[visitor] = &pr
	}
	return out, nil
}

// shown returns the summary of c as the API shows one conversation: with
// the profile its visitor gave themself.
func (s *Service) shown(ctx context.Context, c conversation.Conversation) (chatapi.Summary, error) {
	profiles, err := s.profilesOf(ctx, c.Tenant, []string{c.Visitor})
	if err != nil {
		return chatapi.Summary{}, err
	}
	sum := summary(c)
	sum.VisitorProfile = profiles[c.Visitor]
	return sum, nil
}

// visitorsOf returns the distinct visitors of cs.
func visitorsOf(cs []conversation.Conversation) []string {
	seen := make(map[string]bool, len(cs))
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		if !seen[c.Visitor] {
			seen[c.Visitor] = true
			out = append(out, c.Visitor)
		}
	}
	return out
}

// profileAD binds a sealed profile to its tenant and visitor, so that it
// cannot be passed off as another's.
func profileAD(tenant, visitor string) []byte {
	return seal.AD(tenant, visitor, "profile")
}
