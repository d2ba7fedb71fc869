package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// memberAs returns the principal of r, a member of its tenant with one of
// roles; any other role is refused before anything reaches the bus. It
// serves the routes whose path says who calls: /v1/me/... is a visitor's
// own data, /v1/subjects/{id}/... an admin's act on a subject. Who may
// make any other privacy call is the privacy service's rule alone.
func (a *API) memberAs(r *http.Request, roles ...auth.Role) (auth.Principal, error) {
	p, err := a.member(r, false)
	if err != nil {
		return p, err
	}
	if !slices.Contains(roles, p.Role) {
		return p, errRole
	}
	return p, nil
}

// subjectParam returns the data subject named in the path.
func subjectParam(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !stream.ValidToken(id) {
		return "", errUnknownSubj
	}
	return id, nil
}

// consentBody is PUT /v1/me/consent. Every purpose is required;
// notice_version, when absent, stays the one of the consent in force, which
// the privacy service reads and records over in one step.
type consentBody struct {
	Analytics     *bool   `json:"analytics"`
	NetworkData   *bool   `json:"network_data"`
	AI            *bool   `json:"ai"`
	NoticeVersion *string `json:"notice_version"`
}

// consentView is a consent as the API shows it.
type consentView struct {
	Analytics     bool      `json:"analytics"`
	NetworkData   bool      `json:"network_data"`
	AI            bool      `json:"ai"`
	NoticeVersion string    `json:"notice_version"`
	At            time.Time `json:"at"`
}

func viewOfConsent(c event.Consent, at time.Time) consentView {
	return consentView{Analytics: c.Analytics, NetworkData: c.NetworkData, AI: c.AI, NoticeVersion: c.NoticeVersion, At: at}
}

func (a *API) putConsent(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleVisitor)
	if err != nil {
		return err
	}
	var body consentBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if body.Analytics == nil || body.NetworkData == nil || body.AI == nil {
		return invalid("consent needs analytics, network_data and ai")
	}
	args := privacyapi.SetConsentArgs{
		Tenant:     p.Tenant,
		Consent:    event.Consent{Analytics: *body.Analytics, NetworkData: *body.NetworkData, AI: *body.AI},
		SameNotice: body.NoticeVersion == nil,
	}
	if body.NoticeVersion != nil {
		args.Consent.NoticeVersion = *body.NoticeVersion
	}
	var res privacyapi.ConsentResult
	if err := a.call(r, privacyapi.SetConsentSubject, p, args, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewOfConsent(res.Consent, res.At))
	return nil
}

// getConsent answers the visitor's consent in force: the widget reads it to
// change one purpose (ai, before a bot answers) and send back the others as
// they are. The privacy service answers the visitor's own history, the last
// entry being the one in force.
func (a *API) getConsent(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleVisitor)
	if err != nil {
		return err
	}
	var res privacyapi.ConsentHistoryResult
	if err := a.call(r, privacyapi.ConsentHistorySubject, p, privacyapi.PersonArgs{Tenant: p.Tenant, Person: p.ID}, &res); err != nil {
		return err
	}
	if len(res.Entries) == 0 {
		return errUnknownSubj
	}
	last := res.Entries[len(res.Entries)-1]
	writeJSON(w, http.StatusOK, viewOfConsent(last.Consent, last.At))
	return nil
}

// exportDoc is a data subject's export: everything Parley holds about them.
type exportDoc struct {
	Subject struct {
		Tenant string `json:"tenant"`
		ID     string `json:"id"`
	} `json:"subject"`
	ExportedAt  time.Time                     `json:"exported_at"`
	Consents    []consentView                 `json:"consents"`
	NetworkData []privacyapi.NetworkDataEntry `json:"network_data"`
	Requests    []privacyapi.RequestEntry     `json:"requests"`
	// Profile is the one the subject gave themself; null when none.
	Profile       *chatapi.Profile       `json:"profile"`
	Conversations []exportedConversation `json:"conversations"`
}

type exportedConversation struct {
	conversation
	Messages []chatapi.Message `json:"messages"`
}

func (a *API) exportMe(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleVisitor)
	if err != nil {
		return err
	}
	return a.export(w, r, p, p.ID)
}

func (a *API) exportSubject(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleAdmin)
	if err != nil {
		return err
	}
	subject, err := subjectParam(r)
	if err != nil {
		return err
	}
	return a.export(w, r, p, subject)
}

// export answers the privacy service's export of subject: the privacy
// service starts it (records it, audits a staff export, and answers gone or
// not found for a subject that is erased or never existed), then answers
// its conversations page after page, reading each from the chat service.
// The gateway only writes what it is given.
//
// A history can be far larger than the gateway should hold, so the
// document is streamed: the privacy service's part, then each page of
// conversations as it comes, flushed. The answer begins once the first page
// is read, so an export refused outright is still a problem; one that fails
// later is cut off (abortAnswer).
func (a *API) export(w http.ResponseWriter, r *http.Request, p auth.Principal, subject string) error {
	var priv privacyapi.ExportResult
	if err := a.call(r, privacyapi.ExportSubject, p, privacyapi.PersonArgs{Tenant: p.Tenant, Person: subject}, &priv); err != nil {
		return err
	}
	doc := exportDoc{
		ExportedAt:    priv.At.UTC(),
		Consents:      make([]consentView, len(priv.Consents)),
		NetworkData:   priv.NetworkData,
		Requests:      priv.Requests,
		Conversations: []exportedConversation{},
	}
	doc.Subject.Tenant, doc.Subject.ID = p.Tenant, subject
	for i, c := range priv.Consents {
		doc.Consents[i] = viewOfConsent(c.Consent, c.At)
	}
	if doc.NetworkData == nil {
		doc.NetworkData = []privacyapi.NetworkDataEntry{}
	}
	if doc.Requests == nil {
		doc.Requests = []privacyapi.RequestEntry{}
	}
	out := &exportStream{w: w}
	err := chatapi.ReadPages(func(after *chatapi.ExportCursor) (*chatapi.ExportCursor, error) {
		var raw json.RawMessage
		args := privacyapi.ExportPageArgs{Tenant: p.Tenant, Person: subject, ExportID: priv.ExportID, After: after}
		if err := a.call(r, privacyapi.ExportPageSubject, p, args, &raw); err != nil {
			return nil, err
		}
		page, err := decodeExportPage(raw)
		if err != nil {
			return nil, fmt.Errorf("decode %s result: %w", privacyapi.ExportPageSubject, err)
		}
		if !out.begun {
			doc.Profile = page.Profile
			w.Header().Set("Content-Disposition", `attachment; filename="parley-export.json"`)
			if err := out.start(doc); err != nil {
				return nil, err
			}
		}
		return page.Next, out.page(page)
	})
	if err == nil {
		err = out.end()
	}
	if err != nil && out.begun {
		return abortAnswer(fmt.Errorf("stream export: %w", err))
	}
	return err
}

func (a *API) eraseMe(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleVisitor)
	if err != nil {
		return err
	}
	return a.erase(w, r, p, p.ID)
}

func (a *API) eraseSubject(w http.ResponseWriter, r *http.Request) error {
	p, err := a.memberAs(r, auth.RoleAdmin)
	if err != nil {
		return err
	}
	subject, err := subjectParam(r)
	if err != nil {
		return err
	}
	var body struct{}
	if err := decode(w, r, &body, true); err != nil {
		return err
	}
	return a.erase(w, r, p, subject)
}

// erase asks the privacy service to erase subject. It answers 202 as the
// contract says, though the privacy service answers once the erasure is
// completed: status tells which.
func (a *API) erase(w http.ResponseWriter, r *http.Request, p auth.Principal, subject string) error {
	var res privacyapi.Erasure
	if err := a.call(r, privacyapi.EraseSubject, p, privacyapi.EraseArgs{Tenant: p.Tenant, Person: subject}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"erasure_id": res.ErasureID, "status": res.Status})
	return nil
}

// erasureView is an erasure as the API shows it.
type erasureView struct {
	ErasureID   string                    `json:"erasure_id"`
	Subject     string                    `json:"subject"`
	Status      string                    `json:"status"`
	RequestedAt time.Time                 `json:"requested_at"`
	CompletedAt *time.Time                `json:"completed_at"`
	Report      *privacyapi.ErasureReport `json:"report"`
}

// erasureStatus serves admins and the erased visitor, whose token still
// verifies after the erasure: the privacy service decides who may ask, and
// answers a visitor about their own erasure only.
func (a *API) erasureStatus(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	id := r.PathValue("erasure_id")
	if !stream.ValidToken(id) {
		return errUnknownErase
	}
	var res privacyapi.Erasure
	if err := a.call(r, privacyapi.ErasureStatusSubject, p, privacyapi.ErasureStatusArgs{Tenant: p.Tenant, ErasureID: id}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, erasureView{
		ErasureID: res.ErasureID, Subject: res.Person, Status: res.Status,
		RequestedAt: res.RequestedAt, CompletedAt: res.CompletedAt, Report: res.Report,
	})
	return nil
}

// listAudit answers the tenant's audit trail to those the privacy service
// lets read it (auditors and admins).
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	since, err := sinceParam(r)
	if err != nil {
		return err
	}
	var res privacyapi.ListAuditResult
	if err := a.call(r, privacyapi.ListAuditSubject, p, privacyapi.ListAuditArgs{Tenant: p.Tenant, Since: since}, &res); err != nil {
		return err
	}
	if res.Entries == nil {
		res.Entries = []audit.Entry{}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// sinceParam returns the ?since= of a listing: an RFC 3339 time, zero
// when absent.
func sinceParam(r *http.Request) (time.Time, error) {
	q := r.URL.Query()
	if !q.Has("since") {
		return time.Time{}, nil
	}
	since, err := time.Parse(time.RFC3339, q.Get("since"))
	if err != nil {
		return time.Time{}, errBadSince
	}
	return since, nil
}

// auditCheckpoint answers the tenant's latest signed checkpoint of its
// audit chain and the public key that verifies it, for the auditor to keep
// apart from Parley; the privacy service decides who may read it.
func (a *API) auditCheckpoint(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	var res privacyapi.AuditCheckpointResult
	if err := a.call(r, privacyapi.AuditCheckpointSubject, p, privacyapi.TenantArgs{Tenant: p.Tenant}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// noticeView is a tenant's privacy notice.
type noticeView struct {
	Version string `json:"version"`
	Text    string `json:"text"`
}

// noticeMaxAge is how long, in seconds, a client or cache may keep a
// notice: a change reaches every visitor within it.
const noticeMaxAge = 60

// getNotice answers the tenant's privacy notice to anyone: the widget shows
// it before a visitor chooses. It is read from the gateway's copy of the
// settings, so it costs no call on the bus; the requests of one client
// address share a principal's rate. Settings not read yet answer 503
// rather than the default notice, which a visitor would then consent under.
func (a *API) getNotice(w http.ResponseWriter, r *http.Request) error {
	tid := r.PathValue("tenant")
	if !auth.ValidTenantID(tid) || !a.cfg.Tenants.Exists(tid) {
		return errUnknownTenant
	}
	if err := a.principal.take("notice:" + a.addressKey(r, tid)); err != nil {
		a.rejected(limitRequests)
		return err
	}
	set, err := a.cfg.Settings.Of(r.Context(), tid)
	if err != nil {
		return errors.Join(errNotReady, err)
	}
	set = set.WithDefaults()
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", noticeMaxAge))
	writeJSON(w, http.StatusOK, noticeView{Version: set.NoticeVersion, Text: set.NoticeText})
	return nil
}

// settingsBody is PUT /v1/settings. retention_days and
// collect_network_data are required; erase_after_close_hours, when absent,
// is 0: no automatic erasure; min_group_size, when absent, is 0: the
// analytics default. retention_seconds and erase_after_close_seconds are
// the test unit of privacyapi.Settings. The values are validated by the
// privacy service, which stores them: its refusal is the answer.
type settingsBody struct {
	RetentionDays                    *int  `json:"retention_days"`
	CollectNetworkData               *bool `json:"collect_network_data"`
	EraseAfterCloseHours             int   `json:"erase_after_close_hours"`
	RetentionSeconds                 int   `json:"retention_seconds"`
	EraseAfterCloseSeconds           int   `json:"erase_after_close_seconds"`
	MinGroupSize                     int   `json:"min_group_size"`
	OpenConversationsPerVisitor      int   `json:"open_conversations_per_visitor"`
	MessagesPerConversationPerMinute int   `json:"messages_per_conversation_per_minute"`
	// NoticeText and NoticeVersion, when absent, are "": the widget's own
	// wording, and version "1".
	NoticeText    string `json:"notice_text"`
	NoticeVersion string `json:"notice_version"`
}

func (b settingsBody) settings() (privacyapi.Settings, error) {
	if b.RetentionDays == nil || b.CollectNetworkData == nil {
		return privacyapi.Settings{}, invalid("retention_days and collect_network_data are required")
	}
	return privacyapi.Settings{
		RetentionDays:          *b.RetentionDays,
		CollectNetworkData:     *b.CollectNetworkData,
		EraseAfterCloseHours:   b.EraseAfterCloseHours,
		RetentionSeconds:       b.RetentionSeconds,
		EraseAfterCloseSeconds: b.EraseAfterCloseSeconds,
		MinGroupSize:           b.MinGroupSize,

		OpenConversationsPerVisitor:      b.OpenConversationsPerVisitor,
		MessagesPerConversationPerMinute: b.MessagesPerConversationPerMinute,

		NoticeText:    b.NoticeText,
		NoticeVersion: b.NoticeVersion,
	}, nil
}

// getSettings and putSettings serve those the privacy service lets manage
// the settings (admins).
func (a *API) getSettings(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	var res privacyapi.Settings
	if err := a.call(r, privacyapi.GetSettingsSubject, p, privacyapi.TenantArgs{Tenant: p.Tenant}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) putSettings(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	var body settingsBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	s, err := body.settings()
	if err != nil {
		return err
	}
	var res privacyapi.Settings
	if err := a.call(r, privacyapi.PutSettingsSubject, p, privacyapi.PutSettingsArgs{Tenant: p.Tenant, Settings: s}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
