package privacyapi

// ConversationErasedSubject carries a ConversationErased broadcast once the
// privacy service has secure-deleted every event of a conversation (its
// automatic erasure after closing, see Settings.EraseAfterCloseHours): the
// chat service drops it from its read models, the gateway forgets what it
// cached of it. A service that missed the broadcast finds the conversation
// gone from the CHAT stream when it next reads it or restarts.
const ConversationErasedSubject = "parley.conversation.erased"

// ConversationErased names an erased conversation; ids only.
type ConversationErased struct {
	Tenant       string `json:"tenant"`
	Conversation string `json:"conversation"`
}
