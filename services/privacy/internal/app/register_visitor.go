package app

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"unicode/utf8"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// RegisterVisitor makes a new visitor of tenant: a new data subject with its
// own keys and a ConsentRecorded event holding their choices. It returns the
// visitor's id and their session, which lasts as long as the tenant retains
// their data, from its last refresh: every caller gets both. Invalid
// arguments give a *ValidationError and change nothing.
//
// Network data nd, when given, is recorded only if the visitor consents to
// network_data and the tenant's settings collect it; otherwise it is dropped
// unseen. It is sealed under the visitor's data key before it is stored.
//
// The expiry of the visitor's keys is scheduled first, for after the
// tenant's retention (ExpiryScheduler), so that nothing of theirs outlives
// it. Then the keys: if the consent event cannot be appended, what is left
// is an unused key, never a consent record for a visitor without keys; and
// network data is only ever stored after the consent that allows it. The
// session comes last: if it cannot be started, the visitor registered is
// one who never chats, erased with their expiry.
func (a *App) RegisterVisitor(ctx context.Context, tenant string, c event.Consent, nd *privacyapi.NetworkData) (privacyapi.RegisterVisitorResult, error) {
	if err := errors.Join(validToken("tenant", tenant), validNoticeVersion(c.NoticeVersion), validNetworkData(nd)); err != nil {
		return privacyapi.RegisterVisitorResult{}, err
	}
	visitor, err := a.register(ctx, tenant, c, nd)
	if err != nil {
		return privacyapi.RegisterVisitorResult{}, err
	}
	life, err := a.visitorSessionTTL(ctx, tenant)
	if err != nil {
		return privacyapi.RegisterVisitorResult{}, err
	}
	p := auth.Principal{Tenant: tenant, ID: visitor, Role: auth.RoleVisitor}
	session, err := a.newSession(ctx, event.NewID(), p, a.now().Add(life))
	if err != nil {
		return privacyapi.RegisterVisitorResult{}, fmt.Errorf("start session of visitor: %w", err)
	}
	return privacyapi.RegisterVisitorResult{VisitorID: visitor, Session: session}, nil
}

// register stores the new visitor of RegisterVisitor and returns their id.
func (a *App) register(ctx context.Context, tenant string, c event.Consent, nd *privacyapi.NetworkData) (string, error) {
	s, err := a.tenantSettings(ctx, tenant)
	if err != nil {
		return "", err
	}
	visitor := event.NewID()
	// Before anything of the visitor's is stored: a visitor who never
	// chats is erased after the retention too, and their first chat event
	// pushes the expiry out.
	if err := a.expiries.ScheduleExpiry(ctx, tenant, visitor, s.Retention()); err != nil {
		return "", fmt.Errorf("schedule expiry of visitor: %w", err)
	}
	keys, err := a.GetKeys(ctx, tenant, visitor, true)
	if err != nil {
		return "", fmt.Errorf("create keys of visitor: %w", err)
	}
	e, err := event.NewClear(event.ConsentRecorded, tenant, visitor, visitor, a.now(), c)
	if err != nil {
		return "", err
	}
	seq, err := a.events.Append(ctx, e)
	if err != nil {
		return "", fmt.Errorf("record consent: %w", err)
	}
	if nd != nil && c.NetworkData && s.CollectNetworkData {
		e, err := event.New(keys.Data, privacyapi.NetworkDataRecordedType, tenant, visitor, visitor, a.now(), nd)
		if err != nil {
			return "", err
		}
		if seq, err = a.events.Append(ctx, e); err != nil {
			return "", fmt.Errorf("record network data: %w", err)
		}
	}
	// The visitor's next call may well come to this instance.
	if err := a.index.waitApplied(ctx, seq); err != nil {
		return "", err
	}
	return visitor, nil
}

func validNoticeVersion(v string) error {
	switch {
	case v == "":
		return &ValidationError{Field: "notice_version", Reason: "is required"}
	case !utf8.ValidString(v) || utf8.RuneCountInString(v) > privacyapi.MaxNoticeVersion:
		return &ValidationError{Field: "notice_version", Reason: fmt.Sprintf("must be at most %d UTF-8 characters", privacyapi.MaxNoticeVersion)}
	}
	return nil
}

// validNetworkData accepts only coarse data: a network of exactly /24
// (IPv4) or /48 (IPv6) with no host bits, and a known browser family. A
// whole address, or any other text, is never stored.
func validNetworkData(nd *privacyapi.NetworkData) error {
	if nd == nil {
		return nil
	}
	var errs []error
	pfx, err := netip.ParsePrefix(nd.IPPrefix)
	wantBits := 48
	if err == nil && pfx.Addr().Is4() {
		wantBits = 24
	}
	if err != nil || pfx.Addr().Zone() != "" || pfx.Addr().Is4In6() || pfx.Bits() != wantBits || pfx.Masked() != pfx {
		errs = append(errs, &ValidationError{Field: "network_data.ip_prefix", Reason: "must be an IPv4 /24 or IPv6 /48 network"})
	}
	switch nd.Browser {
	case privacyapi.BrowserChrome, privacyapi.BrowserFirefox, privacyapi.BrowserSafari, privacyapi.BrowserEdge, privacyapi.BrowserOther:
	default:
		errs = append(errs, &ValidationError{Field: "network_data.browser", Reason: "must be Chrome, Firefox, Safari, Edge or Other"})
	}
	return errors.Join(errs...)
}
