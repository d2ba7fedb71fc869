// Package stream defines Parley's JetStream streams, the subjects in them,
// and its key-value buckets; the same definitions serve the embedded server
// of `parley all` and a production cluster.
//
// Only an operator's admin connection changes a stream's configuration:
// Apply creates or updates every stream and bucket, and `parley all` and
// `parley streams apply` call it. A service only creates what is missing
// (Create, CreateBuckets), because a user allowed to update a stream could
// reconfigure it to source or mirror another stream and read the copies
// (privacy guarantee 4, see pkg/buspolicy).
package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	Chat      = "CHAT"
	Privacy   = "PRIVACY"
	Analytics = "ANALYTICS"
	Audit     = "AUDIT"
	Keys      = "KEYS"
	// AuditCheckpoints holds each tenant's latest signed checkpoint of its
	// audit chain (pkg/audit Checkpoint), on subjects
	// "audit_checkpoint.<tenant>": apart from AUDIT, so that deleting that
	// stream leaves the proof that it held entries.
	AuditCheckpoints = "AUDIT_CHECKPOINTS"
	// Schedules holds the privacy service's scheduled messages (the
	// erasure of a conversation some time after it closes) and the
	// messages they fire, on subjects "schedule.>".
	Schedules = "SCHEDULES"
	// Profiles holds the name and e-mail visitors give themselves, sealed
	// under their key, on subjects "profile.<tenant>.<visitor>"; owned by
	// the chat service.
	Profiles = "PROFILES"
	// Deliveries is the log of deliveries to bots and integrations, on
	// subjects "delivery.<tenant>.<integration>": an entry per attempt
	// (event id, type, outcome, status, duration), never content.
	Deliveries = "DELIVERIES"
	// Recipients records which integration received a visitor's events,
	// on subjects "recipient.<tenant>.<visitor>.<integration>", one
	// message each, so that an erasure notifies them; purged at erasure.
	Recipients = "RECIPIENTS"
	// Notices holds the "subject erased" notices not yet acknowledged by
	// their integration, on subjects "notice.<tenant>.<integration>": a
	// work queue, each removed once acknowledged or abandoned.
	Notices = "NOTICES"
)

// Options tune the stream definitions for a deployment. The zero value suits
// a single embedded server.
type Options struct {
	// Replicas is the JetStream replication factor; 0 means 1.
	Replicas int
	// ChatMaxAge is the longest retention any tenant may choose; 0 means 10 years.
	ChatMaxAge time.Duration
}

const (
	defaultChatMaxAge = 10 * 365 * 24 * time.Hour
	analyticsMaxAge   = 7 * 24 * time.Hour
	// DeliveriesMaxAge is how long the delivery log keeps an entry.
	DeliveriesMaxAge = 30 * 24 * time.Hour
	// DeliveriesPerIntegration bounds the entries the delivery log keeps
	// of one integration, the oldest going first.
	DeliveriesPerIntegration = 10_000
	// noticesMaxAge outlasts the retries of a notice (see the delivery
	// package), so that none is dropped while still tried.
	noticesMaxAge = 7 * 24 * time.Hour
)

// Duplicate windows. JetStream holds the Nats-Msg-Id of every message of a
// stream's window in memory, about 140 bytes each, and rebuilds that set
// from the stored messages at every start: a stream's share of the
// server's memory is its write rate times its window, so the streams
// written at the rate of the messages get the shortest window that their
// idempotency needs (measured in BENCHMARKS.md: with two-minute windows,
// `parley all` restarted after a burst of 4,571 messages a second held
// about 150 MiB of ids).
const (
	// defaultDuplicates is the window of the streams written at the rate
	// of conversations, staff actions or erasures, never of messages.
	defaultDuplicates = 2 * time.Minute
	// chatDuplicates: a repeated request on the same conversation finds
	// its event through the stream's expected sequence and chat's
	// idempotency index, whatever the window (TestKeyedRepeatPastDuplicateWindow);
	// the window only turns away, with 422, a key reused on another
	// conversation or call while the first may still be in flight (the
	// bus's request timeout is 5 s) or promptly retried.
	chatDuplicates = 30 * time.Second
	// analyticsDuplicates outlasts twice the privacy relay's AckWait
	// (30 s), so that a batch of facts relayed again as it was (the same
	// events, in the same order) is dropped as a duplicate (checked by
	// the relay's tests); ClickHouse keeps one row per fact id for facts
	// relayed again in another grouping, and for anything later.
	analyticsDuplicates = time.Minute
)

// ValidToken reports whether s may be used as one token of a NATS subject:
// tenant, conversation and principal ids all must be: 1 to 64 of A–Z, a–z,
// 0–9, '_' and '-'. A loop rather than a regular expression, which cost
// every event's relay a microsecond of CPU.
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ChatSubject is the subject of one conversation's events.
func ChatSubject(tenant, conversation string) string {
	return "chat." + tenant + "." + conversation
}

// PrivacySubject is the subject of the privacy events of one person, a
// data subject in the GDPR's sense (a visitor or a member of staff), named
// by their id. In Parley "subject" alone means a NATS subject.
func PrivacySubject(tenant, person string) string {
	return "privacy." + tenant + "." + person
}

// LiveChatSubjects is where the CHAT stream republishes every event it
// stores, once, right after storing it and before it acknowledges the
// append: an event stored on chat.<tenant>.<conversation> is republished on
// live.chat.<tenant>.<conversation> with its headers, plus JetStream's
// Nats-Stream and Nats-Sequence. Live delivery follows these subjects, not
// chat.>: a core subscriber there also receives what the stream refuses (an
// append with a stale expected-last-subject-sequence, which chat then
// retries or rejects) and what it drops (a retried append within the
// duplicate window), which were never stored. Only the server publishes
// here (pkg/buspolicy), so an event on these subjects is a stored one.
const LiveChatSubjects = "live.chat.>"

// ChatSubjects are the subjects CHAT stores: chat.<tenant>.<conversation>.
// A consumer of the whole stream filters on exactly these: the server then
// reads its next message in sequence order, where any other filter of all
// of CHAT ("chat.>") has it match the subjects of the block for each message
// (BENCHMARKS.md, "Consumers of all of CHAT").
const ChatSubjects = "chat.*.*"

// LiveChatSubject is the subject one conversation's stored events are
// republished on.
func LiveChatSubject(tenant, conversation string) string {
	return "live." + ChatSubject(tenant, conversation)
}

// DeliverySubject is the subject of the delivery log of tenant's
// integration.
func DeliverySubject(tenant, integration string) string {
	return "delivery." + tenant + "." + integration
}

// RecipientSubject is the subject of the record that tenant's integration
// received events of visitor.
func RecipientSubject(tenant, visitor, integration string) string {
	return "recipient." + tenant + "." + visitor + "." + integration
}

// NoticeSubject is the subject of the pending erasure notices of tenant's
// integration.
func NoticeSubject(tenant, integration string) string {
	return "notice." + tenant + "." + integration
}

// ProfileSubject is the subject of one visitor's profile.
func ProfileSubject(tenant, visitor string) string {
	return "profile." + tenant + "." + visitor
}

// KeysSubject is the subject holding one person's wrapped keys.
func KeysSubject(tenant, person string) string {
	return "keys." + tenant + "." + person
}

// KEKStateSubjects, in the KEYS stream, hold which key-encryption key
// (KEK) is in force, named by its fingerprint, and a KEK rotation under
// way: the last message on them is the state, and every key record is
// published expecting the sequence of the state its writer read, so that a
// rotation begun or finished meanwhile makes the server refuse it. "_kek"
// is no tenant id, so no person's keys are stored here.
const KEKStateSubjects = "keys._kek.*"

// KEKStateSubject is the subject of one KEK state message, named by name.
func KEKStateSubject(name string) string { return "keys._kek." + name }

// Config returns the definition of the named stream.
func Config(name string, o Options) (jetstream.StreamConfig, error) {
	replicas := max(o.Replicas, 1)
	chatMaxAge := o.ChatMaxAge
	if chatMaxAge == 0 {
		chatMaxAge = defaultChatMaxAge
	}
	base := jetstream.StreamConfig{
		Name:        name,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  defaultDuplicates,
		AllowDirect: true,
	}
	switch name {
	case Chat:
		base.Subjects = []string{ChatSubjects}
		base.Duplicates = chatDuplicates
		base.RePublish = &jetstream.RePublish{Source: "chat.>", Destination: LiveChatSubjects}
		base.MaxAge = chatMaxAge
		base.AllowMsgTTL = true
		base.DenyPurge = true
	case Privacy:
		base.Subjects = []string{"privacy.*.*"}
		base.DenyDelete = true
		base.DenyPurge = true
	case Analytics:
		base.Subjects = []string{"analytics.*.*"}
		base.Duplicates = analyticsDuplicates
		base.MaxAge = analyticsMaxAge
	case Audit:
		base.Subjects = []string{"audit.*"}
		base.DenyDelete = true
		base.DenyPurge = true
	case AuditCheckpoints:
		base.Subjects = []string{"audit_checkpoint.*"}
		// The latest checkpoint says all an older one does.
		base.MaxMsgsPerSubject = 1
		base.DenyDelete = true
		base.DenyPurge = true
	case Keys:
		base.Subjects = []string{"keys.*.*"}
		base.AllowMsgTTL = true
		// One message per subject: a person's keys are written once and only
		// ever secure-deleted, never replaced. The server refuses a second
		// one rather than dropping the first, so a key record is created
		// once without an expectation on its own subject, which leaves the
		// one expectation a publish may carry to the KEK in force (see
		// KEKStateSubjects).
		base.MaxMsgsPerSubject = 1
		base.Discard = jetstream.DiscardNew
		base.DiscardNewPerSubject = true
		base.DenyPurge = true
	case Schedules:
		base.Subjects = []string{"schedule.>"}
		// JetStream message scheduling (ADR-51): a schedule and its target
		// must be in one stream. Each schedule rolls up its subject, so
		// the server requires roll-ups and purges allowed; set here so the
		// stored definition is this one.
		base.AllowMsgSchedules = true
		base.AllowRollup = true
		base.DenyPurge = false
	case Profiles:
		base.Subjects = []string{"profile.*.*"}
		// No per-subject limit: the server drops a message over the limit
		// with a plain delete, which leaves its bytes in the store files.
		// The chat service secure-deletes every older version itself once
		// the new one is stored, and every version on removal.
		base.DenyPurge = true
	case Deliveries:
		base.Subjects = []string{"delivery.*.*"}
		base.MaxAge = DeliveriesMaxAge
		base.MaxMsgsPerSubject = DeliveriesPerIntegration
	case Recipients:
		base.Subjects = []string{"recipient.*.*.*"}
		// One record per visitor and integration, kept no longer than any
		// tenant may keep a conversation.
		base.MaxMsgsPerSubject = 1
		base.MaxAge = chatMaxAge
	case Notices:
		base.Subjects = []string{"notice.*.*"}
		base.Retention = jetstream.WorkQueuePolicy
		base.MaxAge = noticesMaxAge
	default:
		return jetstream.StreamConfig{}, fmt.Errorf("unknown stream %q", name)
	}
	return base, nil
}

// Names lists every stream of Parley, in the order Apply applies them.
func Names() []string {
	return []string{Privacy, Keys, Audit, AuditCheckpoints, Analytics, Chat, Schedules, Profiles, Deliveries, Recipients, Notices}
}

// Ensure creates or updates the named streams. Updating needs the right to
// reconfigure a stream, which only the admin user holds: services use Create.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options, names ...string) error {
	for _, name := range names {
		cfg, err := Config(name, o)
		if err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", name, err)
		}
	}
	return nil
}

// WrongLastSequence reports whether err is JetStream refusing a publish
// because the subject moved past the sequence it expected. Replicated
// streams answer with a code of their own for the same refusal, which
// every writer that expects a sequence must treat alike; hence one test.
func WrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
