package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/gateway/internal/netdata"
)

type visitorBody struct {
	Consent *struct {
		Analytics   *bool `json:"analytics"`
		NetworkData *bool `json:"network_data"`
		AI          *bool `json:"ai"`
	} `json:"consent"`
	NoticeVersion string `json:"notice_version"`
}

// consent returns the consent the body gives. Each choice must be there,
// which is the body's shape; the notice version is the privacy service's
// to judge.
func (b visitorBody) consent() (event.Consent, error) {
	c := b.Consent
	switch {
	case c == nil:
		return event.Consent{}, invalid("consent is required")
	case c.Analytics == nil || c.NetworkData == nil || c.AI == nil:
		return event.Consent{}, invalid("consent needs analytics, network_data and ai")
	}
	return event.Consent{Analytics: *c.Analytics, NetworkData: *c.NetworkData, AI: *c.AI, NoticeVersion: b.NoticeVersion}, nil
}

// createVisitor lets anyone become a visitor of a tenant: the privacy
// service creates the data subject, records their consent and starts their
// session, then the gateway issues their access token.
func (a *API) createVisitor(w http.ResponseWriter, r *http.Request) error {
	tid := r.PathValue("tenant")
	if !auth.ValidTenantID(tid) || !a.cfg.Tenants.Exists(tid) {
		return errUnknownTenant
	}
	var body visitorBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	consent, err := body.consent()
	if err != nil {
		return err
	}
	giveBack, err := a.admitRegistration(r, tid)
	if err != nil {
		return err
	}
	args := privacyapi.RegisterVisitorArgs{Tenant: tid, Consent: consent}
	if consent.NetworkData {
		args.NetworkData = a.networkData(r, tid)
	}
	var res privacyapi.RegisterVisitorResult
	// The caller is anonymous: the request names the tenant and no one else.
	req := rpc.Request[privacyapi.RegisterVisitorArgs]{Principal: auth.Principal{Tenant: tid}, Args: args}
	if err := rpc.Call(r.Context(), a.cfg.NC, privacyapi.RegisterVisitorSubject, req, &res); err != nil {
		if rpc.CodeOf(err) == rpc.CodeInvalid {
			// Registered no one: a bad request uses none of the limits.
			giveBack()
		}
		return err
	}
	view, err := a.sessionView(res.Session)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, visitorView{VisitorID: res.VisitorID, Token: view.AccessToken, sessionView: view})
	return nil
}

// visitorView is a new visitor: their id and session. Token repeats
// AccessToken for the clients written before sessions.
type visitorView struct {
	VisitorID string `json:"visitor_id"`
	Token     string `json:"token"`
	sessionView
}

// networkData returns the coarse network data of a visitor who consented to
// its collection, when tenant collects it; nil otherwise. The address is
// the client's the per-address limits count (clientAddr): behind a reverse
// proxy, the proxy's own would be every visitor's. Settings that cannot be
// read collect nothing: the visitor registers all the same.
func (a *API) networkData(r *http.Request, tenant string) *privacyapi.NetworkData {
	set, err := a.cfg.Settings.Of(r.Context(), tenant)
	if err != nil {
		a.cfg.Log.Warn("read tenant settings; collecting no network data", "tenant", tenant, "err", err)
		return nil
	}
	if !set.CollectNetworkData {
		return nil
	}
	addr, ok := clientAddr(r, a.cfg.ClientAddrHeader)
	if !ok {
		return nil
	}
	return netdata.Of(addr, r.UserAgent())
}

// admitRegistration spends one of the registrations of the client's
// address, then one of the tenant's: a client over its own limit is refused
// before it uses up the tenant's, which every other visitor of the tenant
// shares, and a registration the tenant's limit refuses is given back to
// the address. giveBack returns both, for a registration that registered
// no one.
func (a *API) admitRegistration(r *http.Request, tenant string) (giveBack func(), err error) {
	lim := a.cfg.Tenants.Limits(tenant)
	address, err := a.addresses.takePerMinute(a.addressKey(r, tenant), lim.RegistrationsPerAddressPerMinute, errRegAddress)
	if err != nil {
		a.rejected(limitRegAddress)
		return nil, err
	}
	tenantWide, err := a.registrations.takePerMinute(tenant, lim.RegistrationsPerMinute, errRegTenant)
	if err != nil {
		address()
		a.rejected(limitRegTenant)
		return nil, err
	}
	return func() { address(); tenantWide() }, nil
}

// addressKey keys the limits of r's client address in tenant; clients
// whose address cannot be read share one key.
func (a *API) addressKey(r *http.Request, tenant string) string {
	if addr, ok := clientAddr(r, a.cfg.ClientAddrHeader); ok {
		return a.addressKeys.of(tenant, addr)
	}
	return tenant + ":?"
}
