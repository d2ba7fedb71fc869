package privacyapi

import "time"

// Retention is how long the tenant's conversation events are kept:
// RetentionSeconds when set, RetentionDays otherwise, and DefaultRetentionDays
// when neither is.
func (s Settings) Retention() time.Duration {
	switch {
	case s.RetentionSeconds > 0:
		return time.Duration(s.RetentionSeconds) * time.Second
	case s.RetentionDays > 0:
		return time.Duration(s.RetentionDays) * 24 * time.Hour
	}
	return DefaultRetentionDays * 24 * time.Hour
}

// EraseAfterClose is how long after closing a conversation is erased by
// default: EraseAfterCloseSeconds when set, EraseAfterCloseHours otherwise;
// 0 means never.
func (s Settings) EraseAfterClose() time.Duration {
	if s.EraseAfterCloseSeconds > 0 {
		return time.Duration(s.EraseAfterCloseSeconds) * time.Second
	}
	return time.Duration(s.EraseAfterCloseHours) * time.Hour
}

// OpenConversationLimit is how many conversations one visitor may have open
// at once.
func (s Settings) OpenConversationLimit() int {
	if s.OpenConversationsPerVisitor > 0 {
		return s.OpenConversationsPerVisitor
	}
	return DefaultOpenConversationsPerVisitor
}

// MessageLimit is how many messages one conversation may take in any
// minute.
func (s Settings) MessageLimit() int {
	if s.MessagesPerConversationPerMinute > 0 {
		return s.MessagesPerConversationPerMinute
	}
	return DefaultMessagesPerConversationPerMinute
}
