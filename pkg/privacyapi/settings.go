package privacyapi

// Settings subjects, served by the privacy service in queue group Queue.
const (
	// GetSettingsSubject answers a tenant's settings; DefaultSettings when
	// they were never set.
	//
	// Request: rpc.Request[TenantArgs]. Result: Settings. Who: an admin of
	// the tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant; rpc.CodeForbidden for
	// any other role or another tenant.
	GetSettingsSubject = "parley.privacy.settings.get"

	// PutSettingsSubject replaces a tenant's settings, and writes the
	// change to the audit trail (action "settings.change") first: a change
	// that could not be audited is not made.
	//
	// Request: rpc.Request[PutSettingsArgs]. Result: Settings as stored.
	// Who: an admin of the tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or a value out of range
	// (see MinRetentionDays, MaxRetentionDays, MaxEraseAfterCloseHours);
	// rpc.CodeForbidden for any other role or another tenant.
	PutSettingsSubject = "parley.privacy.settings.put"
)

// SettingsBucket is the JetStream key-value bucket of tenant settings, owned
// and written by the privacy service only. The key is the tenant id, the
// value the JSON of Settings; a tenant without a key has DefaultSettings.
// Settings are not personal data: services that need them (chat for
// retention, the gateway for network data) may read and watch the bucket.
const SettingsBucket = "SETTINGS"

// Bounds and defaults of Settings.
const (
	MinRetentionDays     = 1
	MaxRetentionDays     = 3650
	DefaultRetentionDays = 365
	// MaxEraseAfterCloseHours is a year.
	MaxEraseAfterCloseHours = 24 * 365
	// MaxMinGroupSize bounds MinGroupSize; its floor is the analytics
	// service's own minimum, analyticsapi.DefaultMinGroupSize.
	MaxMinGroupSize = 1000
	// DefaultOpenConversationsPerVisitor and MaxOpenConversationsPerVisitor
	// are the default and the ceiling of OpenConversationsPerVisitor.
	DefaultOpenConversationsPerVisitor = 5
	MaxOpenConversationsPerVisitor     = 10_000
	// DefaultMessagesPerConversationPerMinute and
	// MaxMessagesPerConversationPerMinute are the default and the ceiling
	// of MessagesPerConversationPerMinute.
	DefaultMessagesPerConversationPerMinute = 60
	MaxMessagesPerConversationPerMinute     = 100_000
	// MaxNoticeText is the longest NoticeText, in characters;
	// MaxNoticeVersion the longest NoticeVersion (and the longest notice
	// version a visitor's consent may record).
	MaxNoticeText    = 4000
	MaxNoticeVersion = 64
	// DefaultNoticeVersion is the NoticeVersion of a tenant that set none.
	DefaultNoticeVersion = "1"
)

// Settings are a tenant's privacy policy.
type Settings struct {
	// RetentionDays is how long conversations are kept,
	// MinRetentionDays..MaxRetentionDays.
	RetentionDays int `json:"retention_days"`
	// CollectNetworkData allows storing a truncated IP address and the
	// browser family of visitors who consent to "network_data".
	CollectNetworkData bool `json:"collect_network_data"`
	// EraseAfterCloseHours, when not 0, erases every conversation that long
	// after it closes unless the visitor chose otherwise;
	// 0..MaxEraseAfterCloseHours.
	EraseAfterCloseHours int `json:"erase_after_close_hours"`
	// MinGroupSize is the fewest distinct visitors a metric's point may
	// stand for before it is suppressed; 0 means the analytics default (5),
	// and a tenant may only raise it, up to MaxMinGroupSize.
	MinGroupSize int `json:"min_group_size,omitempty"`
	// OpenConversationsPerVisitor bounds the conversations one visitor may
	// have open at once; 0 means DefaultOpenConversationsPerVisitor,
	// at most MaxOpenConversationsPerVisitor.
	OpenConversationsPerVisitor int `json:"open_conversations_per_visitor,omitempty"`
	// MessagesPerConversationPerMinute bounds the messages of one
	// conversation, from anyone, in any minute; 0 means
	// DefaultMessagesPerConversationPerMinute, at most
	// MaxMessagesPerConversationPerMinute.
	MessagesPerConversationPerMinute int `json:"messages_per_conversation_per_minute,omitempty"`

	// RetentionSeconds and EraseAfterCloseSeconds are the same two policies
	// in seconds, for tests and evaluations that cannot wait days: when one
	// is above 0 it takes the place of its days or hours field (see
	// Retention and EraseAfterClose). 0..MaxRetentionDays in seconds and
	// 0..MaxEraseAfterCloseHours in seconds.
	RetentionSeconds       int `json:"retention_seconds,omitempty"`
	EraseAfterCloseSeconds int `json:"erase_after_close_seconds,omitempty"`

	// NoticeText is the privacy notice the widget shows visitors before
	// they choose, plain text of at most MaxNoticeText characters; ""
	// means the widget's own wording. NoticeVersion names it, at most
	// MaxNoticeVersion characters: a visitor's consent records the version
	// they were shown. Both are public (GET /v1/tenants/{tenant}/notice).
	NoticeText    string `json:"notice_text"`
	NoticeVersion string `json:"notice_version"`
}

// WithDefaults returns s with the defaults of fields that mean "the
// default" when empty, as stored settings are answered: NoticeVersion, for
// settings stored before it existed or put without one.
func (s Settings) WithDefaults() Settings {
	if s.NoticeVersion == "" {
		s.NoticeVersion = DefaultNoticeVersion
	}
	return s
}

// DefaultSettings are the settings of a tenant that never set any: a year
// of retention, no network data, no automatic erasure.
func DefaultSettings() Settings {
	return Settings{RetentionDays: DefaultRetentionDays, NoticeVersion: DefaultNoticeVersion}
}

// TenantArgs names a tenant.
type TenantArgs struct {
	Tenant string `json:"tenant"`
}

// PutSettingsArgs replaces a tenant's settings; every field is set, so an
// absent erase_after_close_hours turns automatic erasure off.
type PutSettingsArgs struct {
	Tenant   string   `json:"tenant"`
	Settings Settings `json:"settings"`
}
