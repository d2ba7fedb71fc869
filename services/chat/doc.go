// Package chat is Parley's chat service: the conversation aggregate,
// event-sourced on the JetStream stream CHAT.
//
// It serves the request/reply subjects of pkg/chatapi (open, post, assign,
// hand off, close, rate, list, messages, get, export, withdraw, and a visitor's
// profile: put, get, delete) to the gateway, in queue group
// chatapi.Queue so that instances share the load, and produces the chat
// events of pkg/event on chat.<tenant>.<conversation>, each stamped, inside
// its sealed payload, with what the one fold of the conversation
// (internal/conversation) derives once it applies (event.Stamp): its
// assignee, and the first-response and resolution seconds. The gateway's
// live hub and the privacy relay read the stamp instead of folding the
// conversation again or asking.
//
// Guarantees:
//   - A visitor's profile (the name and e-mail they gave themself) is kept
//     in the stream PROFILES sealed under their key, only the latest
//     version: older ones are secure-deleted once a new one is stored, all
//     on removal and on the visitor's erasure. It is shown with their
//     conversations and in their export, and never appended to CHAT.
//   - A message its visitor withdrew reads withdrawn everywhere: the
//     withdrawal is appended, then the posting's event is secure-deleted
//     from CHAT.
//   - Every event of a conversation is sealed under its visitor's data key,
//     fetched from the privacy service's key service; no text reaches the
//     store in the clear. Once the visitor is erased, commands on their
//     conversations answer CodeGone, their messages read as erased with no
//     author, and the conversations are closed with no assignee, the same
//     whether the read models saw the erasure or were rebuilt after it.
//   - Appends expect the conversation's last subject sequence, so writers in
//     any number of instances never interleave or lose an event; a writer
//     that lost the race catches up and decides again, a bounded number of
//     times (parley_chat_append_conflicts_total counts the lost races).
//   - Retention is enforced by the store: every event is appended with a
//     per-message TTL (Nats-TTL) of its tenant's retention, read from the
//     privacy service's SETTINGS bucket, which the service watches (the
//     default settings for a tenant without any); the CHAT stream's MaxAge
//     is the ceiling. Run waits for the bucket, so nothing is appended under
//     a default a tenant changed. The read models drop each event when its
//     TTL runs out, as the store does, and a conversation once all of its
//     events did: it then answers not found, also after a restart.
//   - A conversation opened with erase_after_close_hours, or under a tenant
//     whose settings erase conversations after closing, records the delay
//     in effect in its opening event (event.Opened.EraseAfterCloseSeconds),
//     resolved once, at opening. The privacy service schedules the erasure
//     when the conversation closes and secure-deletes its events when it
//     is due; on its broadcast (privacyapi.ConversationErased) the read
//     models drop the conversation for good, and it answers not found.
//   - The conversations' state (the inbox, and what commands decide on)
//     lives in memory and in the KV bucket CHAT_VIEW, a view of CHAT that
//     records the sequence it reflects, what the events seal of the visitor
//     (assignee, rating, withdrawn opening, erasure delay) sealed under the
//     visitor's key. A visitor's erasure rewrites each of their entries
//     erased; an entry carries a per-message TTL, so that the bucket drops
//     it 30 s after its conversation's events expired. At start the open
//     conversations are loaded from the view (CHAT read for the expired
//     ones alone, never listed) and caught up from CHAT
//     before any request is served, then kept current by an ordered
//     consumer; the view is written after the stream, once a second. An
//     instance reads its own writes at once. Transcripts and exports are read from CHAT
//     when asked (batched direct gets of the conversation's subject, the
//     rest of a long page through a consumer filtered to it), a
//     bounded batch at a time, so memory does not grow with messages.
//   - Limits, from the tenant's settings, answer rpc.CodeLimited with a
//     RetryAfter: a visitor may keep open_conversations_per_visitor
//     conversations open (counted in this instance's read model, whose own
//     openings for one visitor are serialised; one made on another instance
//     a moment before may not be counted yet), and a conversation takes
//     messages_per_conversation_per_minute messages in each minute-long
//     window, a rule of the conversation decided like any other, so exact
//     across instances.
//   - Agents' presence (online or away, set by each agent) and capacity (the
//     open conversations they may hold, set by supervisors and admins) live
//     in the KV bucket AGENTS, which every instance reads when it assigns:
//     an assignment to an agent who is away, or at capacity (counted in
//     this instance's read model, so one assigned a moment before on
//     another instance may not be counted yet), answers rpc.CodeConflict
//     unless a supervisor or admin overrides it. Presence is what the agent
//     last set; nothing sets it for them.
//   - A conversation may be assigned to a bot a tenant's admin registered:
//     the assignment reads the privacy service's INTEGRATIONS bucket by
//     direct get (no bucket, or no record of kind bot, is no bot: 422
//     naming bot_id), and the assignee is event.BotAssignee. The bot's
//     principal posts in, and hands off, only the open conversations
//     assigned to it, and reads only their transcripts: while the
//     visitor's ai consent holds (privacyapi.GetConsentSubject, any error
//     being no consent: rpc.CodeForbidden), every text redacted
//     (pkg/redact), no visitor profile, not audited; no list, summary,
//     export or typing. A hand-off (event chat.handed_off.v1, by the
//     visitor or the bot) unassigns the bot, stamped with it as the
//     previous assignee, and stays in the transcript as a line with
//     handed_off set. A bot's message is no first response.
//   - Every page of a transcript a member of staff reads is written to the
//     audit trail (privacyapi.AppendAuditSubject) before it is answered,
//     whoever asks on the bus; a page that could not be audited answers
//     rpc.CodeUnavailable and no text. An export is read by the privacy
//     service, which records and audits it, on behalf of whoever asked it.
//   - Answers that can outgrow a NATS message (the list, a transcript, an
//     export) always come in pages bounded by chatapi.PageBytes of JSON as
//     sent, so that no reply exceeds the bus's 1 MiB, whatever the texts
//     hold; a request without a page asks for the first.
package chat
