package app

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Messages returns one page of a conversation's transcript, oldest first,
// from after the cursor (see chatapi.MessagesArgs), to its participants,
// supervisors and admins. Authors and texts are decrypted now, under the
// visitor's key: once that key is gone every message reads Author nil,
// Text nil, Erased true.
func (s *Service) Messages(ctx context.Context, p auth.Principal, args chatapi.MessagesArgs) (chatapi.MessagesResult, error) {
	if err := conversation.CheckActor(p); err != nil {
		return chatapi.MessagesResult{}, err
	}
	e, err := s.find(ctx, p.Tenant, args.Conversation)
	if err != nil {
		return chatapi.MessagesResult{}, err
	}
	c, msgs := e.transcript()
	if err := c.CanRead(p); err != nil {
		return chatapi.MessagesResult{}, err
	}
	key, err := s.visitorKeys(ctx, c.Tenant, c.Visitor)
	erased := errors.Is(err, conversation.ErrErased)
	if err != nil && !erased {
		return chatapi.MessagesResult{}, err
	}
	pg := newPage(args.Page.Limit)
	// A transcript is in stream order: the page starts at the first message
	// after the cursor.
	msgs = msgs[sort.Search(len(msgs), func(i int) bool { return msgs[i].seq > args.Page.After }):]
	res := chatapi.MessagesResult{Messages: make([]chatapi.Message, 0, min(len(msgs), pg.limit))}
	for _, m := range msgs {
		cm := chatapi.Message{ID: m.env.ID, Seq: m.seq, At: m.env.At, Erased: erased}
		if !erased {
			if cm.Author, cm.Text, err = open(key.Data, m.env); err != nil {
				return chatapi.MessagesResult{}, err
			}
		}
		ok, err := pg.take(cm)
		if err != nil {
			return chatapi.MessagesResult{}, err
		}
		if !ok {
			res.Next = &res.Messages[len(res.Messages)-1].Seq
			break
		}
		res.Messages = append(res.Messages, cm)
	}
	return res, nil
}

// open decrypts a message event's author and text.
func open(key seal.Key, env event.Envelope) (*event.Author, *string, error) {
	switch env.Type {
	case event.ConversationOpened:
		var o event.Opened
		if err := env.Open(key, &o); err != nil {
			return nil, nil, fmt.Errorf("read message: %w", err)
		}
		return &event.Author{Role: string(auth.RoleVisitor), ID: env.Subject}, &o.Text, nil
	case event.MessagePosted:
		var p event.Posted
		if err := env.Open(key, &p); err != nil {
			return nil, nil, fmt.Errorf("read message: %w", err)
		}
		return &p.Author, &p.Text, nil
	}
	return nil, nil, fmt.Errorf("read message: %s is not a message", env.Type)
}
