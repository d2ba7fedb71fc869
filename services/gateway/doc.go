// Package gateway is Parley's only public entry point: the HTTP API of
// tenants, visitors and conversations, the WebSocket stream of live events,
// and the operations endpoints (/healthz, /readyz, /metrics,
// /v1/openapi.json).
//
// It holds no conversation state. It authenticates callers, validates
// input, and forwards each request to the chat or privacy service over the
// bus (pkg/chatapi, pkg/privacyapi); errors come back as rpc codes and
// become RFC 9457 problems in one place. A request that fails
// authentication or validation never reaches the bus.
//
// It owns the tenant registry, the JetStream KV bucket TENANTS, mirrored in
// memory so every request's tenant check is local. A tenant's record holds
// the limits the operator set on its live sessions and visitor
// registrations (tenant.Limits), so that checking them is local too. It
// also owns staff sign-in through each tenant's OpenID provider
// (internal/signin: the buckets IDENTITY_PROVIDERS and SIGN_IN); the
// sessions it then mints access tokens for are the privacy service's.
//
// Limits: each is answered 429 with Retry-After (or 408 for a request body
// that does not arrive within its deadline) and counted in
// parley_gateway_limit_rejections_total by limit. The process admits at most
// Deps.MaxSessions WebSocket sessions, by default its open-file limit less a
// reserve for everything else, and no more than a share of its soft memory
// limit holds. The chat service decides the limits on open
// conversations and messages, from the tenant's settings.
//
// Live events: the CHAT stream republishes on live.chat.<tenant>.> each
// event it stores, once, so a session is never shown an append the stream
// refused or dropped as a duplicate. The hub subscribes there for each
// tenant with a WebSocket session on this gateway, from the tenant's first
// session to its last, and its subscriptions hand the events to one
// pipeline, bounded for all tenants together; past the bound events are
// dropped and every session of their tenant is sent a resync. Events are decrypted with the visitor's key (asked of the key
// service and cached until erasure) and pushed only to sessions allowed to
// see them, by the assignee chat stamped into the event (see internal/live). When a subject is erased, their sessions are closed, and an
// erased visitor's token, valid until it expires, opens no new session and
// makes no other call (410) but asking for the erasure and how it went: the
// key cache knows from the erasure broadcast, or after a restart from the
// key service's tombstone.
//
// The gateway translates HTTP to bus calls and back and holds no use case:
// besides its own limits (requests, sessions, registrations), it checks a
// body's shape (JSON, required fields, the size of a text) and passes the
// values to the service whose rules they are, whose refusal (422 with the
// service's message) is the answer. Privacy calls
// (consent, export, erasure, audit trail, settings) go to the privacy
// service; an export is the privacy service's, which reads the
// conversations from the chat service page by page, and the gateway streams
// the pages it is given. Staff reads of transcripts are audited by the chat
// service that serves them; a staff member's live stream, which the
// gateway serves, is written to the audit trail by the privacy service
// (privacyapi.AuditStreamSubject) before its handshake completes, and
// refused when it cannot be.
//
// Data minimisation: the gateway logs no IP address, user agent, language
// or location, and reads or forwards none of them except at visitor
// registration. There the client address keys the limit on registrations
// per address as an HMAC under a random key held in memory only and
// replaced hourly, never stored; and when the tenant's settings collect
// network data and the visitor consents, only the network (/24, /48) and the
// browser family go to the privacy service (internal/netdata). Request logs hold
// the method, route pattern, status and duration only.
package gateway
