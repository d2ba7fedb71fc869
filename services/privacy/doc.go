// Package privacy is Parley's privacy service: the keeper of every data
// subject's keys, of their consent and of their erasure, of the audit trail
// and of each tenant's privacy settings.
//
// It serves, in queue group privacyapi.Queue so that instances share the load
// (the contract of each call, with who may make it and its errors, is in
// pkg/privacyapi and pkg/personkey):
//   - the key service on personkey.GetSubject: a subject's data key and
//     pseudonym key, created on first request when asked to, or only
//     whether the subject has keys (a probe, which unwraps nothing);
//   - visitor registration on privacyapi.RegisterVisitorSubject, with the
//     visitor's coarse network data when the tenant collects it and the
//     visitor consents, which starts the visitor's session too;
//   - erasure on privacyapi.EraseSubject and ErasureStatusSubject;
//   - a subject's export: its own part on privacyapi.ExportSubject, then
//     the subject's conversations on ExportPageSubject, read page by page
//     from the chat service for whoever started the export;
//   - a training export of a tenant on privacyapi.TrainingExportSubject
//     (audited, recorded in PRIVACY), then its lines on TrainingPageSubject:
//     the service reads the tenant's events from CHAT itself, by batched
//     direct gets, opens those of visitors whose `ai` consent held when
//     they were written and holds at the export's start, and answers them
//     redacted (pkg/redact) and pseudonymized (privacyapi.TrainingPseudonym),
//     then a manifest of the visitors' pseudonyms;
//   - the consent registry on privacyapi.SetConsentSubject,
//     GetConsentSubject and ConsentHistorySubject;
//   - the audit trail on privacyapi.AppendAuditSubject, ListAuditSubject
//     and AuditCheckpointSubject, and the openings of staff's live
//     streams, which the gateway reports on AuditStreamSubject;
//   - tenant settings on privacyapi.GetSettingsSubject and
//     PutSettingsSubject;
//   - sessions on privacyapi.StartSessionSubject, RefreshSessionSubject,
//     EndSessionSubject and RevokeSessionsSubject: refresh-token families
//     in the SESSIONS bucket, stored as hashes, rotating on every use, a
//     reuse revoking the family; a visitor's starts at registration and
//     ends with their erasure;
//   - bots and integrations on privacyapi.PutIntegrationSubject,
//     GetIntegrationSubject, ListIntegrationsSubject,
//     DeleteIntegrationSubject and StartBotSessionSubject: kept in the
//     INTEGRATIONS bucket, each signing secret sealed under the KEK and
//     bound to its tenant and id, given once; a bot's session is started
//     by this service for the principal {tenant, id, bot}, refreshes only
//     while the bot is registered, and ends when it is deleted.
//
// It broadcasts personkey.Erased on personkey.ErasedSubject after every
// erasure and privacyapi.ConsentChanged on privacyapi.ConsentChangedSubject
// after every consent; pkg/personkey holds the key cache other services
// keep, which follows the erasures.
//
// It relays conversations to analytics (internal/relay): a durable consumer
// of CHAT ("privacy-relay") writes content-free facts, pseudonymized under
// the subjects' pseudonym keys, to ANALYTICS, for visitors whose analytics
// consent held at the time of each event, each from its event alone and the
// stamp the chat service sealed into it (event.Stamp). An erasure computes the visitor's
// pseudonym before destroying the keys, stores the request to delete their
// analytics rows in ANALYTICS, and asks the analytics service to delete them
// at once (analyticsapi.EraseSubject); the report counts
// "analytics_rows_deleted", or "analytics_cleanup_pending" when the
// analytics service did not answer in time. See docs/analytics.md.
//
// It delivers conversations to the bots and integrations registered in the
// INTEGRATIONS bucket (internal/delivery): a durable consumer of CHAT per
// integration, filtered to its tenant, one event in flight, sends the
// events of visitors whose ai consent held at each event, texts redacted
// (pkg/redact), signed (pkg/webhook), to its webhook or NATS subject,
// retried with backoff, each attempt in the content-free DELIVERIES log
// (privacyapi.DeliveriesSubject). It records in RECIPIENTS which
// integration received whose events; an erasure sends each of them a
// signed subject.erased.v1 notice, reports which acknowledged
// (ErasureReport.Integrations), and keeps sending the others from NOTICES.
//
// It erases conversations automatically a set time after they close
// (internal/ephemeral), when the visitor chose so on opening
// (erase_after_close_hours) or the tenant's settings make it the default;
// the chat service records the delay in effect in the conversation's
// opening event and stamps it on its closing. The erasure is enforced by the store, not by a sweep:
// when the relay sees such a conversation close, it stores a scheduled
// message in the SCHEDULES stream (JetStream message scheduling, ADR-51:
// "Nats-Schedule: @at <close + delay>", Nats-Msg-Id the closing event's id,
// a body of ids only), which the server keeps across restarts and, when
// due, publishes on schedule.fire.erase-conversation.<tenant>.<conversation>.
// A durable consumer of those ("privacy-erase-after-close") then audits the
// erasure (actor role "system", action "conversation.erase"),
// secure-deletes every event of the conversation in CHAT, broadcasts
// privacyapi.ConversationErased (chat drops it from its read models, the
// gateway forgets it), and erases the visitor as an erasure request would,
// audited as "erase" by the system, unless they have another conversation
// left: the chat service lists the visitor's conversations (asked as the
// visitor, page after page) and the CHAT stream confirms each. Each step is safe to repeat;
// a failure or a crash runs the whole erasure again. A conversation that
// never closes is not erased this way (retention still applies).
//
// That consumer runs on a Watermill router (pkg/watermilljs, a Watermill
// subscriber on a JetStream durable pull consumer): each fired message is
// one unit of work, handled alone, and its failures need exactly what
// Watermill's middleware gives. A panic becomes an error (Recoverer); a
// transient failure (the bus or the chat service slow to answer) is
// retried in place a few times with backoff (Retry), then Nacked, so
// JetStream delivers it again two seconds later, for as long as it fails:
// an erasure is an obligation, never dropped. A message no retry can help
// (not JSON, ids not matching its subject) is parked with the reason on
// schedule.poison.erase-conversation in SCHEDULES (PoisonQueue, reason in
// the header "reason_poisoned") and acknowledged, so it never holds up the
// erasures behind it. Watermill's own NATS adapter (watermill-nats v2.1.3)
// is not used: it is built on nats.go's legacy JetStream API, provisions
// streams and looks them up in ways the privacy user may not (pkg/buspolicy),
// and its subscribers close the shared connection.
//
// The relay to analytics stays on a plain pull consumer, as does the
// analytics service's ingest: they are the high-volume paths, where a batch
// of messages becomes one write (a batch of ANALYTICS publishes, one
// ClickHouse insert) and the batch is acknowledged only once that write
// succeeded. Watermill's router hands a handler one message and acks it on
// its own, which would turn every batch into a write per message.
//
// It owns the streams PRIVACY, KEYS, AUDIT, AUDIT_CHECKPOINTS, ANALYTICS and
// SCHEDULES and the
// key-value buckets SETTINGS, SESSIONS and INTEGRATIONS, and creates them at start when missing (never
// updates them: an operator applies changed definitions). Its view of
// PRIVACY (each subject's consents, every erasure) is held in memory, rebuilt from the
// stream's first event before it serves and kept current by following the
// stream, so every instance sees what the others write.
//
// Guarantees:
//   - Keys are stored only wrapped under the key-encryption key (KEK), one
//     message per subject in the KEYS stream; no key is ever on disk in
//     clear. Only this service unwraps them.
//   - A subject has at most one pair of keys: KEYS refuses a second message
//     on a subject, so of any number of instances racing, one creates and
//     all return its keys.
//   - Keys wrapped under another KEK are an error, never replaced by new
//     keys and never unwrapped into wrong ones.
//   - Erasure destroys the subject's key record with a secure delete, which
//     overwrites its bytes in the store files, and stores a tombstone in its
//     place; from then on the key service answers rpc.CodeGone and never
//     creates keys for the subject again. Every service is told at once and
//     evicts what it holds. Erasure reads nothing of the subject's history,
//     so its time does not grow with it. A subject is erased once: asking
//     again answers the same erasure and writes nothing.
//   - PRIVACY events hold no personal data and are not sealed, so consent,
//     export and erasure records stay readable as evidence after the
//     subject is erased. The one exception is network data (a /24 or /48
//     network and a browser family, nothing finer is accepted): it is
//     recorded only when the tenant's settings and the visitor's consent
//     both allow it, sealed under the visitor's data key, so an erasure
//     makes it unreadable.
//   - An export by staff is audited, and every export recorded, before
//     anything is answered; its conversations are answered only under it,
//     to whoever started it, within privacyapi.ExportPagesWithin.
//   - A consent that keeps the notice version in force is read and
//     recorded as one step: appended expecting the subject's last event, and
//     read again when another write came first.
//   - The audit trail of a tenant is one hash chain: this service is its
//     only writer and appends with an expected last subject sequence, so
//     concurrent writers, in one instance or many, never fork it. Erasures
//     and settings changes made by staff are audited before they happen.
//   - After each entry, and before the act goes ahead, it stores the
//     chain's checkpoint (count, head hash) signed with its audit key on
//     AUDIT_CHECKPOINTS, and it never extends a chain shorter than its
//     latest checkpoint, or one whose checkpoint it did not sign.
//   - No key is ever wrapped under a KEK the service cannot unwrap: KEYS
//     records the KEK in force and a rotation under way (stream.
//     KEKStateSubjects), and every key record is published expecting the
//     state its writer read, so the server refuses one wrapped under a
//     retired KEK or during a rotation (answered CodeUnavailable). An
//     instance whose KEK is not in force, or starting mid-rotation, does
//     not start.
//
// For operators it exports tools that work on the store directly, while the
// service is stopped: RotateKEK (`parley keys rotate`, refused while an
// instance serves) re-wraps every live key under a new KEK, secure-deleting
// each old record, so that once the old KEK is destroyed no copy of the
// store made before (backups, snapshots, Raft logs) gives up a key;
// AuditTrail and AuditCheckpoint (`parley audit verify`) read a tenant's
// whole chain and latest checkpoint.
//
// Limits: a crash between an erasure's steps leaves it pending, its keys
// refused by the key service and its broadcast sent (the first step after
// the request), until it is asked for again or, unasked, an instance's
// FinishStalled takes it, at most about three minutes later; a conversation opened by a visitor
// at the very moment their last other conversation's erasure fires may not
// yet be in the chat service's list, and then loses its visitor's key with
// them; a service that missed the erasure
// broadcast (disconnected at that moment) keeps the subject's keys in
// memory until it restarts; and whoever administers the bus can delete
// AUDIT and AUDIT_CHECKPOINTS both, which only a checkpoint saved outside
// Parley by the auditor shows.
package privacy
