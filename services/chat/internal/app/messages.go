package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/redact"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Messages returns one page of a conversation's transcript, oldest first,
// from after the cursor (see chatapi.MessagesArgs), to its participants,
// supervisors and admins, as the JSON of a chatapi.MessagesResult: each
// message is encoded once, into the page it is measured for. Authors and
// texts are decrypted now, under the visitor's key: once that key is gone
// every message reads Author nil, Text nil, Erased true. A staff member's
// read of each page is written to the audit trail before it is answered,
// whoever asks on the bus: a read that could not be audited answers
// ErrNotAudited and nothing of the page.
//
// The bot a conversation is assigned to reads it only while the visitor's
// ai consent holds, asked for each page (ErrNoConsent otherwise), with every
// text redacted (redact.String) and no visitor profile. Its read is not
// audited: it is no person's sight of the conversation, and it is shown only
// what was redacted to leave Parley, as the deliveries it is sent are.
func (s *Service) Messages(ctx context.Context, p auth.Principal, args chatapi.MessagesArgs) (json.RawMessage, error) {
	if err := conversation.CheckWriter(p); err != nil {
		return nil, err
	}
	// The transcript comes from the store; the state held here only says
	// who may read it.
	c, err := s.findAllowed(ctx, p, args.Conversation, (*conversation.Conversation).CanRead)
	if err != nil {
		return nil, err
	}
	bot := p.Role == auth.RoleBot
	if bot && (s.consents == nil || !s.consents.AI(ctx, c.Tenant, c.Visitor)) {
		return nil, ErrNoConsent
	}
	key, err := s.visitorKeys(ctx, c.Tenant, c.Visitor)
	erased := errors.Is(err, conversation.ErrErased)
	if err != nil && !erased {
		return nil, err
	}
	pg := newPageJSON(args.Page.Limit, "messages")
	if !erased && !bot {
		profiles, err := s.profilesOf(ctx, c.Tenant, []string{c.Visitor})
		if err != nil {
			return nil, err
		}
		if prof := profiles[c.Visitor]; prof != nil {
			if err := pg.attach("visitor_profile", prof); err != nil {
				return nil, err
			}
		}
	}
	var (
		last uint64
		next *uint64
	)
	// A transcript is in stream order: the page starts at the first message
	// after the cursor. One event more than the page holds tells whether
	// another page follows.
	tr := lines{key: key.Data, erased: erased, openingWithdrawn: s.openingWithdrawn(ctx, c), redacted: bot}
	// One line reused for every event: each taken escapes to the encoder,
	// which would cost a line allocated for each of a page's hundreds.
	var cm chatapi.Message
	err = s.scan(ctx, c.Tenant, c.ID, args.Page.After, pg.limit+1, func(r Record) (bool, error) {
		var (
			shown bool
			err   error
		)
		cm, shown, err = tr.line(r)
		if err != nil {
			return false, err
		}
		if !shown {
			return true, nil
		}
		// Measured as sent: a redacted text is measured with its
		// placeholders, which may be longer than what they replace.
		ok, err := pg.take(&cm)
		if err != nil {
			return false, err
		}
		if !ok { // never the page's first, which always fits
			next = &last
			return false, nil
		}
		last = r.Seq
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if p.Role.Staff() {
		if err := s.auditRead(ctx, p, c.ID); err != nil {
			return nil, err
		}
	}
	return pg.end(next), nil
}

// auditRead writes p's read of the conversation's transcript to the audit
// trail.
func (s *Service) auditRead(ctx context.Context, p auth.Principal, conv string) error {
	if s.auditor == nil {
		return ErrNotAudited
	}
	err := s.auditor.Audit(ctx, privacyapi.AppendAuditArgs{
		Tenant: p.Tenant,
		Actor:  audit.Actor{Role: p.Role, ID: p.ID},
		Action: audit.ActionTranscriptRead,
		Target: "conversation:" + conv,
	})
	if err != nil {
		return fmt.Errorf("audit transcript read: %w: %w", ErrNotAudited, err)
	}
	return nil
}

// lines reads the transcript lines of one conversation: authors and texts
// decrypted under key unless the visitor is erased, its opening message
// withdrawn when openingWithdrawn says so, and texts redacted when redacted
// is set.
type lines struct {
	key    seal.Key
	erased bool
	// openingWithdrawn tells whether the opening message is withdrawn; it
	// is asked only when the opening is read (see Service.openingWithdrawn).
	openingWithdrawn func() (bool, error)
	redacted         bool
}

// openingWithdrawn returns whether the opening message of c, the state
// this instance held, is withdrawn as the store holds it: the withdrawal is
// a line the transcript hides, and it may be on a later page, so the
// conversation's state tells, caught up with the store unless it says so
// already, since another instance may have withdrawn it a moment ago. Only
// a page holding the opening pays that read, once.
func (s *Service) openingWithdrawn(ctx context.Context, c conversation.Conversation) func() (bool, error) {
	return func() (bool, error) {
		if c.OpeningWithdrawn {
			return true, nil
		}
		e, err := s.find(ctx, c.Tenant, c.ID, true)
		if err != nil {
			return false, fmt.Errorf("read the opening's withdrawal: %w", err)
		}
		return e.snapshot().OpeningWithdrawn, nil
	}
}

// line returns the transcript line of r, and false when r is no line: not a
// message event or a hand-off (see isLine), or the withdrawal of the opening
// message, which reads withdrawn where the opening stands.
func (l lines) line(r Record) (chatapi.Message, bool, error) {
	env := r.Event
	m := chatapi.Message{ID: env.ID, Seq: r.Seq, At: env.At, Erased: l.erased, HandedOff: env.Type == event.ConversationHandedOff}
	if !isLine(env) {
		return m, false, nil
	}
	if l.erased {
		return m, true, nil
	}
	// Allocated for the lines the visitor wrote only: a posted message
	// carries its author.
	visitor := func() *event.Author { return &event.Author{Role: string(auth.RoleVisitor), ID: env.Person} }
	switch env.Type {
	case event.ConversationOpened:
		m.Author = visitor()
		withdrawn, err := l.openingWithdrawn()
		if err != nil {
			return m, false, err
		}
		if withdrawn {
			m.Withdrawn = true
			break
		}
		var o event.Opened
		if err := env.Open(l.key, &o); err != nil {
			return m, false, fmt.Errorf("read message: %w", err)
		}
		m.Text = &o.Text
	case event.MessagePosted:
		var p event.Posted
		if err := env.Open(l.key, &p); err != nil {
			return m, false, fmt.Errorf("read message: %w", err)
		}
		m.Author, m.Text = &p.Author, &p.Text
	case event.MessageWithdrawn:
		var w event.Withdrawn
		if err := env.Open(l.key, &w); err != nil {
			return m, false, fmt.Errorf("read withdrawal: %w", err)
		}
		if w.Opening {
			return m, false, nil
		}
		// Only a visitor withdraws, and only their own message.
		m.ID, m.At, m.Author, m.Withdrawn = w.Message, w.PostedAt, visitor(), true
	case event.ConversationHandedOff:
		var h event.HandedOff
		if err := env.Open(l.key, &h); err != nil {
			return m, false, fmt.Errorf("read hand-off: %w", err)
		}
		m.Author = &h.By
	}
	if l.redacted && m.Text != nil {
		text := redact.String(*m.Text)
		m.Text = &text
	}
	return m, true, nil
}
