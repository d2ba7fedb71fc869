// Package buspolicy is the one definition of what each Parley service may do
// on the bus: the NATS user of each service and its publish and subscribe
// permissions (docs/privacy.md, guarantee 4). The embedded server of
// `parley all` gets its users from Users; a NATS cluster gets the same
// permissions from WriteAuthorization, so the two cannot drift apart.
//
// Every service has an allow list: what is not on it is refused. The deny
// lists repeat what the guarantees name (analytics never reads
// conversations or keys, the gateway and chat never read the KEYS stream,
// no service publishes where CHAT republishes what it stored), so that a
// careless addition to an allow list cannot undo a guarantee: NATS applies
// a deny before an allow.
//
// JetStream access is granted per stream, on the subjects of the JetStream
// API ($JS.API.STREAM.INFO.<stream>, $JS.API.CONSUMER.CREATE.<stream>.…,
// $JS.API.DIRECT.GET.<stream>.…) rather than on $JS.API.>, which would open
// every stream to every service.
//
// Each service receives replies on an inbox of its own, InboxPrefix(user),
// set with nats.CustomInboxPrefix: with the shared _INBOX.> any service
// could subscribe to the replies meant for another, the key service's
// unwrapped keys included.
//
// Services call each other as the system principal (auth.System) on
// internal endpoints, under "parley.internal.>": each may be published to
// only by the services that call it, and never by the gateway, which
// serves users; so a request there comes from a service's own bus user
// (pkg/rpc). Each serving service answers discovery (`nats micro ls`) as
// its micro service, on $SRV subjects of its own name.
//
// No service may update a stream ($JS.API.STREAM.UPDATE): a user allowed
// to may reconfigure the stream, for example to source or mirror KEYS, and
// read the copies, which the subject permissions cannot see. A service only
// creates its own streams when they are missing (stream.Create), and the
// server refuses a create that would change an existing stream; the admin
// user applies configuration changes (stream.Apply, `parley streams
// apply`). What a create of a missing stream may still do, source another
// from the start, stream.Create detects when the service starts on it.
package buspolicy

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// The NATS users: one per service, and Admin for operator tools (`parley
// keys rotate`, the load generator), which has full access.
const (
	Gateway   = "gateway"
	Chat      = "chat"
	Privacy   = "privacy"
	Analytics = "analytics"
	Admin     = "admin"
)

// TenantsBucket is the gateway's key-value bucket of tenants.
const TenantsBucket = stream.TenantsBucket

// ErrUnknownUser is returned for a user name that is not one of the above.
var ErrUnknownUser = errors.New("unknown bus user")

// Services returns the users of the four services, in start order.
func Services() []string { return []string{Privacy, Chat, Analytics, Gateway} }

// InboxPrefix is the reply inbox prefix the user's connection must set with
// nats.CustomInboxPrefix: the user may subscribe under it and nowhere else
// for replies.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// rule is one reason for some permissions; why becomes a comment in the
// generated configuration.
type rule struct {
	why      string
	pub, sub []string
}

// policy is what one user may do.
type policy struct {
	allow []rule
	deny  []rule
	// respond lets the user answer the requests it receives, on their reply
	// subjects only (allow_responses), so servers need no publish right on
	// other services' inboxes.
	respond bool
}

// policyOf returns the policy of user; admin has none (full access).
func policyOf(user string) (policy, bool) {
	switch user {
	case Gateway:
		return policy{
			allow: []rule{
				inbox(Gateway),
				{why: "calls: conversation commands, privacy calls, subject keys, analytics queries",
					pub: []string{"parley.chat.>", "parley.privacy.>", personkey.GetSubject, "parley.analytics.>"}},
				{why: "live events for connected clients, as the CHAT stream republishes them once stored: ciphertext, decrypted per reader",
					sub: []string{stream.LiveChatSubjects}},
				{why: "typing signals, published by the instance a client typed on and followed by every instance to reach the other side: core NATS only, no stream captures them, no other service hears them",
					pub: []string{chatapi.TypingSignals}, sub: []string{chatapi.TypingSignals}},
				{why: "what a reconnecting client missed: an ephemeral consumer on CHAT filtered to a tenant's conversations (chat.<tenant>.*), pulled and deleted; the same ciphertext as live, no single-message reads",
					pub: []string{
						"$JS.API.CONSUMER.CREATE." + stream.Chat + ".*." + stream.ChatSubject("*", "*"),
						"$JS.API.CONSUMER.MSG.NEXT." + stream.Chat + ".*",
						"$JS.API.CONSUMER.DELETE." + stream.Chat + ".*",
					}},
				broadcasts(personkey.ErasedSubject),
				jsAccount(),
				kvOwn(TenantsBucket, "the tenant registry, which the gateway owns"),
				kvOwn(stream.IdentityProvidersBucket, "each tenant's identity provider, client secret included, which the gateway owns and only it reads"),
				kvOwn(stream.SignInBucket, "pending sign-ins (state, nonce, PKCE verifier), which the gateway owns: any instance finishes a sign-in another started"),
				kvRead(privacyapi.SettingsBucket, "tenant settings, owned by privacy: read and watch"),
			},
			deny: []rule{
				{why: "the gateway never writes events: the chat service does, after its checks",
					pub: []string{"chat.>"}},
				{why: "internal endpoints, where services call each other as the system principal: the gateway serves users only",
					pub: []string{internalSubjects}},
				{why: "an export's conversations are read by privacy, which records and audits the export: the gateway cannot read one past it",
					pub: []string{chatapi.ExportSubject}},
				denyLiveForgery(),
				denyKeys(),
				denyOtherInboxes(),
			},
		}, true
	case Chat:
		return policy{
			allow: []rule{
				inbox(Chat),
				{why: "served in queue group chat: the calls of users, and the internal ones of other services",
					sub: []string{"parley.chat.>", "parley.internal.chat.>"}},
				discovery(chatapi.Service),
				{why: "subject keys, from the key service: the only way to them",
					pub: []string{personkey.GetSubject}},
				{why: "internal calls, as the system principal: staff reads of transcripts, written to the audit trail by its keeper before they are answered",
					pub: []string{privacyapi.AppendAuditSubject}},
				{why: "a visitor's consent in force, asked before a bot reads a transcript: only with ai consent",
					pub: []string{privacyapi.GetConsentSubject}},
				broadcasts(personkey.ErasedSubject, privacyapi.ConversationErasedSubject),
				{why: "appends to the CHAT stream",
					pub: []string{"chat.*.*"}},
				jsAccount(),
				jsOwn(stream.Chat, "the CHAT stream, which chat owns: created when missing, read by direct get, followed into the read models"),
				{why: "a withdrawn message's posting, secure-deleted from CHAT",
					pub: []string{"$JS.API.STREAM.MSG.DELETE." + stream.Chat}},
				{why: "visitors' profiles: written to PROFILES, their old versions secure-deleted",
					pub: []string{"profile.*.*", "$JS.API.STREAM.MSG.DELETE." + stream.Profiles}},
				jsOwn(stream.Profiles, "the PROFILES stream, which chat owns: created when missing, read by direct get"),
				kvOwn(stream.ChatViewBucket, "the view of CHAT that chat keeps and starts from, which chat owns"),
				kvOwn(stream.AgentsBucket, "agents' presence and capacity, which chat owns and assigns by"),
				kvRead(privacyapi.SettingsBucket, "tenant settings (retention), owned by privacy: read and watch"),
				jsRead(stream.BucketStream(privacyapi.IntegrationsBucket), "the bots registered, owned by privacy: one key read when a conversation is assigned to a bot, no watch, no write"),
			},
			deny:    []rule{denyLiveForgery(), denyKeys(), denyOtherInboxes()},
			respond: true,
		}, true
	case Privacy:
		return policy{
			allow: []rule{
				inbox(Privacy),
				{why: "served in queue group privacy: the privacy calls and the key service",
					sub: []string{"parley.privacy.>", "parley.internal.privacy.>", personkey.GetSubject}},
				discovery(privacyapi.Service),
				{why: "broadcasts for every service's caches: erasures, consent changes",
					pub: []string{personkey.ErasedSubject, privacyapi.ConsentChangedSubject},
					sub: []string{personkey.ErasedSubject, privacyapi.ConsentChangedSubject}},
				{why: "internal calls, as the system principal: erasure of a subject's pseudonymized rows in analytics; a visitor's conversations, asked of chat, to tell whether anything of theirs is left after an erasure after close or an expiry",
					pub: []string{analyticsapi.EraseSubject, chatapi.VisitorConversationsSubject}},
				{why: "erasure after close: the erased conversation broadcast to chat",
					pub: []string{privacyapi.ConversationErasedSubject}},
				{why: "a subject's export: their conversations, asked of chat page by page for whoever asked for the export",
					pub: []string{chatapi.ExportSubject}},
				{why: "appends to the streams privacy writes",
					pub: []string{"privacy.*.*", "keys.*.*", "audit.*", "audit_checkpoint.*", "analytics.*.*", "schedule.>"}},
				jsAccount(),
				jsOwn(stream.Privacy, "consent and erasure events, which privacy owns"),
				jsOwn(stream.Keys, "subject keys, which privacy owns"),
				{why: "erasure secure-deletes a subject's keys",
					pub: []string{"$JS.API.STREAM.MSG.DELETE." + stream.Keys}},
				jsOwn(stream.Audit, "the audit trail, which privacy owns"),
				jsCreate(stream.AuditCheckpoints, "signed checkpoints of the audit trail, which privacy owns"),
				jsRead(stream.AuditCheckpoints, ""),
				jsCreate(stream.Analytics, "the pseudonymized facts the relay writes, which privacy owns and never reads"),
				jsRead(stream.Chat, "the consent-gated relay follows conversations with its durable consumer; a training export reads a tenant's by batched direct gets"),
				jsConsume(stream.Chat, ""),
				{why: "the relay's instances share its consumer pinned to one at a time, and one that stops hands the pin over",
					pub: []string{"$JS.API.CONSUMER.UNPIN." + stream.Chat + ".*"}},
				{why: "erasure after close secure-deletes every event of the conversation",
					pub: []string{"$JS.API.STREAM.MSG.DELETE." + stream.Chat}},
				jsOwn(stream.Schedules, "scheduled erasures after close and expiries of keys by retention, which privacy owns"),
				{why: "a fired erasure or expiry is deleted once done",
					pub: []string{"$JS.API.STREAM.MSG.DELETE." + stream.Schedules}},
				kvOwn(privacyapi.SettingsBucket, "tenant settings, which privacy owns"),
				kvOwn(stream.SessionsBucket, "sessions (refresh-token hashes), which privacy owns and only it reads"),
				kvOwn(stream.IntegrationsBucket, "bots and integrations, their signing secrets sealed under the KEK, which privacy owns and writes alone"),
				kvOwn(stream.ErasuresBucket, "erasures by id and those pending, which privacy owns and only it reads"),
				{why: "erasure purges every entry of the subject's sessions, leaving no marker behind (a bucket denies deleting one message)",
					pub: []string{"$JS.API.STREAM.PURGE." + stream.BucketStream(stream.SessionsBucket)}},
				{why: "deliveries to bots and integrations: a request to a bot's own NATS subject; the content-free delivery log, who received whose events, and the erasure notices not yet acknowledged",
					pub: []string{"parley.bots.>", "delivery.*.*", "recipient.*.*.*", "notice.*.*"}},
				jsOwn(stream.Deliveries, "the delivery log, which privacy owns"),
				jsOwn(stream.Recipients, "who received whose events, which privacy owns"),
				jsOwn(stream.Notices, "erasure notices not yet acknowledged, which privacy owns"),
				{why: "an erasure purges the records of who received the subject, and removes a notice once acknowledged",
					pub: []string{"$JS.API.STREAM.PURGE." + stream.Recipients, "$JS.API.STREAM.MSG.DELETE." + stream.Notices}},
				{why: "a removed integration's consumer of CHAT is deleted, one removed while no instance ran found among CHAT's consumers",
					pub: []string{"$JS.API.CONSUMER.LIST." + stream.Chat}},
			},
			deny:    []rule{denyLiveForgery(), denyOtherInboxes()},
			respond: true,
		}, true
	case Analytics:
		return policy{
			allow: []rule{
				inbox(Analytics),
				{why: "metrics queries, and the internal erasures of pseudonymized rows, served in queue group analytics",
					sub: []string{"parley.analytics.>", "parley.internal.analytics.>"}},
				discovery(analyticsapi.Service),
				{why: "erasure broadcasts, for caches",
					sub: []string{personkey.ErasedSubject}},
				jsAccount(),
				{why: "its only input, the pseudonymized ANALYTICS stream, owned by privacy: no create or update, so no way to source another stream",
					pub: []string{"$JS.API.STREAM.INFO." + stream.Analytics}},
				jsConsume(stream.Analytics, ""),
			},
			deny: []rule{
				{why: "guarantee 4: analytics never reads conversations or keys, whatever the allow list says; nor hears who is typing",
					pub: []string{"chat.>", "keys.>", "parley.keys.>"},
					sub: []string{"chat.>", stream.LiveChatSubjects, "keys.>", "parley.keys.>", chatapi.TypingSignals}},
				denyStream(stream.Chat, ""),
				denyStream(stream.Keys, ""),
				denyLiveForgery(),
				denyOtherInboxes(),
			},
			respond: true,
		}, true
	}
	return policy{}, false
}

// internalSubjects are the internal endpoints of every service.
const internalSubjects = "parley.internal.>"

// discovery is answering `nats micro ls|info|stats` as the micro service
// name: micro subscribes $SRV.<verb>, $SRV.<verb>.<name> and
// $SRV.<verb>.<name>.<id>, and answers on the reply subject. Other
// services' names stay out of reach, so none answers as another.
func discovery(name string) rule {
	return rule{why: "discovery of its micro service " + name + ": ping, info and stats",
		sub: []string{"$SRV.*", "$SRV.*." + name, "$SRV.*." + name + ".*"}}
}

func inbox(user string) rule {
	return rule{why: "replies to its own calls, JetStream API replies and pulled messages",
		sub: []string{InboxPrefix(user) + ".>"}}
}

// broadcasts is the erasure broadcasts from privacy that a service acts
// on, each service only those it needs.
func broadcasts(subjects ...string) rule {
	return rule{why: "erasure broadcasts from privacy, which evict caches", sub: subjects}
}

// jsAccount is JetStream account info: totals only, no names or content.
// Clients ask for it before they create a bucket.
func jsAccount() rule {
	return rule{why: "JetStream account info: totals only", pub: []string{"$JS.API.INFO"}}
}

// jsCreate is creating a stream when it is missing, and the info that
// tells whether it is as defined. Never STREAM.UPDATE: see the package
// comment.
func jsCreate(name, why string) rule {
	return rule{why: why, pub: []string{
		"$JS.API.STREAM.CREATE." + name,
		"$JS.API.STREAM.INFO." + name,
	}}
}

// jsOwn is what the owner of a stream needs: create it when missing, read
// it, and follow it with consumers.
func jsOwn(name, why string) rule {
	r := jsCreate(name, why)
	r.pub = append(r.pub, jsRead(name, "").pub...)
	r.pub = append(r.pub, jsConsume(name, "").pub...)
	return r
}

// jsRead is reading single messages of a stream, by sequence or by subject.
func jsRead(name, why string) rule {
	return rule{why: why, pub: []string{
		"$JS.API.STREAM.INFO." + name,
		"$JS.API.DIRECT.GET." + name,
		"$JS.API.DIRECT.GET." + name + ".>",
		"$JS.API.STREAM.MSG.GET." + name,
	}}
}

// jsConsume is following a stream with consumers: ordered, ephemeral or
// durable, pulled or pushed, acknowledged and flow controlled, and reset
// to their acknowledgement floor (pkg/watermilljs's batch mode).
func jsConsume(name, why string) rule {
	return rule{why: why, pub: []string{
		"$JS.API.CONSUMER.CREATE." + name,
		"$JS.API.CONSUMER.CREATE." + name + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + name + ".*",
		"$JS.API.CONSUMER.INFO." + name + ".*",
		"$JS.API.CONSUMER.DELETE." + name + ".*",
		"$JS.API.CONSUMER.RESET." + name + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + name + ".*",
		"$JS.ACK." + name + ".>",
		"$JS.FC." + name + ".>",
	}}
}

// kvOwn is owning a key-value bucket: create it when missing, read, watch
// and write it.
func kvOwn(bucket, why string) rule {
	r := jsCreate(stream.BucketStream(bucket), why)
	r.pub = append(r.pub, kvRead(bucket, "").pub...)
	r.pub = append(r.pub, stream.KeySubject(bucket, ">"))
	return r
}

// kvRead is reading and watching a key-value bucket. A watch is an ordered
// push consumer, flow controlled, without acks: no durable consumers, no
// pulls.
func kvRead(bucket, why string) rule {
	name := stream.BucketStream(bucket)
	r := jsRead(name, why)
	r.pub = append(r.pub,
		"$JS.API.CONSUMER.CREATE."+name,
		"$JS.API.CONSUMER.CREATE."+name+".>",
		"$JS.API.CONSUMER.INFO."+name+".*",
		"$JS.API.CONSUMER.DELETE."+name+".*",
		"$JS.FC."+name+".>",
	)
	return r
}

// denyStream refuses every JetStream API call on a stream: stream
// operations (info, create, update, delete, purge, snapshot, message get
// and delete), direct gets, and consumers of every kind.
func denyStream(name, why string) rule {
	return rule{why: why, pub: []string{
		"$JS.API.STREAM.*." + name,
		"$JS.API.STREAM.*.*." + name,
		"$JS.API.DIRECT.GET." + name,
		"$JS.API.DIRECT.GET." + name + ".>",
		"$JS.API.CONSUMER.*." + name,
		"$JS.API.CONSUMER.*." + name + ".>",
		"$JS.API.CONSUMER.*.*." + name + ".>",
		"$JS.ACK." + name + ".>",
	}}
}

func denyKeys() rule {
	r := denyStream(stream.Keys, "guarantee 4: the KEYS stream is read by privacy only; others get keys from the key service")
	r.sub = append(r.sub, "keys.>")
	r.pub = append(r.pub, "keys.>")
	return r
}

// denyLiveForgery keeps every service from publishing where the CHAT
// stream republishes the events it stored: one that could would show live
// sessions events that were never stored, as if they were.
func denyLiveForgery() rule {
	return rule{why: "only JetStream publishes here, each event CHAT stored: live sessions trust it as stored",
		pub: []string{stream.LiveChatSubjects}}
}

func denyOtherInboxes() rule {
	return rule{why: "the shared inbox namespace: replies meant for others",
		sub: []string{"_INBOX.>"}}
}

// Permissions returns the user's permissions: nil for Admin (full access),
// ErrUnknownUser for a name that is no bus user.
func Permissions(user string) (*server.Permissions, error) {
	if user == Admin {
		return nil, nil
	}
	p, ok := policyOf(user)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownUser, user)
	}
	perms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: flatten(p.allow, pubOf), Deny: flatten(p.deny, pubOf)},
		Subscribe: &server.SubjectPermission{Allow: flatten(p.allow, subOf), Deny: flatten(p.deny, subOf)},
	}
	if p.respond {
		perms.Response = &server.ResponsePermission{
			MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS,
			Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION,
		}
	}
	return perms, nil
}

func pubOf(r rule) []string { return r.pub }
func subOf(r rule) []string { return r.sub }

// flatten lists the subjects of rules in order, each once; nil when there
// are none, as the server's configuration parser leaves an absent list.
func flatten(rules []rule, of func(rule) []string) []string {
	var out []string
	for _, r := range rules {
		for _, s := range of(r) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Users returns a server user for every entry of passwords, keyed by user
// name, in the order of Services with Admin last. It fails with
// ErrUnknownUser for a name that is no bus user, and for an empty password.
func Users(passwords map[string]string) ([]*server.User, error) {
	for name, pw := range passwords {
		if _, err := Permissions(name); err != nil {
			return nil, err
		}
		if pw == "" {
			return nil, fmt.Errorf("bus user %s: empty password", name)
		}
	}
	var users []*server.User
	for _, name := range append(Services(), Admin) {
		if pw, ok := passwords[name]; ok {
			perms, _ := Permissions(name) // known: checked above
			users = append(users, &server.User{Username: name, Password: pw, Permissions: perms})
		}
	}
	return users, nil
}
