package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// AnalyticsCleaner deletes an erased subject's pseudonymized analytics rows.
type AnalyticsCleaner interface {
	// Prepare makes sure the rows of pseudonym will be deleted even if this
	// erasure stops right after it, before the keys that compute the
	// pseudonym are destroyed.
	Prepare(ctx context.Context, tenant, pseudonym string) error
	// Erase deletes the rows of pseudonym now and returns how many facts
	// were deleted.
	Erase(ctx context.Context, tenant, pseudonym string) (int64, error)
}

// Names of the counts an erasure reports about analytics.
const (
	CountAnalyticsRowsDeleted   = "analytics_rows_deleted"
	CountAnalyticsCleanupPended = "analytics_cleanup_pending"
)

// AnalyticsConsentAt reports whether tenant's subject consented to
// analytics at time at (see ConsentAt).
func (a *App) AnalyticsConsentAt(ctx context.Context, tenant, subject string, at time.Time) (bool, error) {
	c, ok, err := a.ConsentAt(ctx, tenant, subject, at)
	return ok && c.Analytics, err
}

// ConsentAt returns the consent tenant's subject had in force at time at:
// the last they recorded at or before at. It reports false for a subject
// without a consent recorded by then, or erased, who consented to nothing.
// The answer is the index's: call CatchUp first to include what other
// instances have just recorded.
func (a *App) ConsentAt(ctx context.Context, tenant, subject string, at time.Time) (event.Consent, bool, error) {
	var (
		c  privacyapi.ConsentResult
		ok bool
	)
	err := a.read(ctx, subjectID{tenant, subject}, func(st *subjectState) { c, ok = st.consentAt(at) })
	return c.Consent, ok, err
}

// consentAt returns the subject's consent in force at time at.
func (st *subjectState) consentAt(at time.Time) (privacyapi.ConsentResult, bool) {
	return st.lastConsent(func(c privacyapi.ConsentResult) bool { return !c.At.After(at) })
}

// lastConsent returns the subject's last consent for which held is true;
// false when none is, or they were erased.
func (st *subjectState) lastConsent(held func(privacyapi.ConsentResult) bool) (privacyapi.ConsentResult, bool) {
	if st.erasure.id != "" {
		return privacyapi.ConsentResult{}, false
	}
	for i := len(st.consents) - 1; i >= 0; i-- {
		if held(st.consents[i]) {
			return st.consents[i], true
		}
	}
	return privacyapi.ConsentResult{}, false
}

// prepareAnalytics computes the subject's analytics pseudonym and has the
// cleaner store the request to delete its rows, before the keys are
// destroyed. It returns "" when there is nothing to clean: no cleaner, or
// no keys left to compute the pseudonym from.
func (a *App) prepareAnalytics(ctx context.Context, tenant, subject string) (string, error) {
	if a.analytics == nil {
		return "", nil
	}
	pseudonym, err := a.analyticsPseudonym(ctx, tenant, subject)
	if err != nil || pseudonym == "" {
		return "", err
	}
	if err := a.analytics.Prepare(ctx, tenant, pseudonym); err != nil {
		return "", fmt.Errorf("prepare analytics cleanup: %w", err)
	}
	return pseudonym, nil
}

// analyticsPseudonym returns the subject's analytics pseudonym, computed
// from their pseudonym key while it still exists; "" when they have no keys
// left (expired, or destroyed by an earlier attempt).
func (a *App) analyticsPseudonym(ctx context.Context, tenant, subject string) (string, error) {
	k, err := a.load(ctx, tenant, subject)
	switch {
	case errors.Is(err, keyring.ErrNotFound), errors.Is(err, keyring.ErrErased):
		return "", nil
	case err != nil:
		return "", err
	}
	return analyticsapi.Pseudonym(k.Pseudonym, subject), nil
}

// cleanAnalytics deletes the rows of pseudonym and returns the counts for
// the erasure report. A cleaner that does not answer in time leaves the
// deletion to the request Prepare stored, and the report says it is
// pending.
func (a *App) cleanAnalytics(ctx context.Context, tenant, pseudonym string) map[string]int64 {
	if a.analytics == nil || pseudonym == "" {
		return nil
	}
	n, err := a.analytics.Erase(ctx, tenant, pseudonym)
	if err != nil {
		return map[string]int64{CountAnalyticsCleanupPended: 1}
	}
	return map[string]int64{CountAnalyticsRowsDeleted: n}
}
