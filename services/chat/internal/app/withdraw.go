package app

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Withdraw withdraws a message its visitor wrote (conversation.Withdraw
// says who may): it appends the withdrawal, which readers and live
// sessions see in its place, then deletes the posting's event from the
// store, overwriting its sealed text. The opening message's event stays,
// since the conversation is folded from it: the fold records its withdrawal
// and readers show it withdrawn from that. A withdrawal repeated — also one
// whose deletion a crash interrupted — appends nothing and deletes what is
// left. The withdrawal carries the hash of the idempotency key the message
// was posted with, if any, in the clear: it is what the key finds once the
// posting is deleted, so a repeat of the post answers the message and
// stores nothing (see Post).
func (s *Service) Withdraw(ctx context.Context, p auth.Principal, args chatapi.WithdrawArgs) (struct{}, error) {
	var posting uint64
	_, _, err := s.update(ctx, p, args.Conversation, func(c *conversation.Conversation) ([]conversation.Change, error) {
		if err := c.CanWithdraw(p); err != nil {
			return nil, err
		}
		keys, err := s.visitorKeys(ctx, c.Tenant, c.Visitor)
		if err != nil {
			return nil, err
		}
		var m conversation.Written
		m, posting, err = s.written(ctx, *c, keys.Data, args.Message)
		if err != nil {
			return nil, err
		}
		return c.Withdraw(p, m)
	})
	if err != nil {
		return struct{}{}, err
	}
	if posting > 0 {
		if err := s.events.Delete(ctx, posting); err != nil {
			return struct{}{}, fmt.Errorf("delete a withdrawn message: %w", err)
		}
	}
	return struct{}{}, nil
}

// written reads what c's transcript, up to c's version, says of message
// id, and the sequence of its posting while the store still holds it (0
// when it holds none).
func (s *Service) written(ctx context.Context, c conversation.Conversation, key seal.Key, id string) (conversation.Written, uint64, error) {
	var (
		m       conversation.Written
		posting uint64
	)
	err := s.scan(ctx, c.Tenant, c.ID, 0, readBatch, func(r Record) (bool, error) {
		if r.Seq > c.Version {
			return false, nil
		}
		env := r.Event
		switch {
		case env.Type == event.MessageWithdrawn:
			var w event.Withdrawn
			if err := env.Open(key, &w); err != nil {
				return false, fmt.Errorf("read withdrawal: %w", err)
			}
			if w.Message == id {
				m.ID, m.Withdrawn = id, true
			}
		case env.ID == id && env.Type == event.ConversationOpened:
			m = conversation.Written{ID: id, Opening: true, Author: event.Author{Role: string(auth.RoleVisitor), ID: env.Person}, At: env.At}
		case env.ID == id && env.Type == event.MessagePosted:
			var posted event.Posted
			if err := env.Open(key, &posted); err != nil {
				return false, fmt.Errorf("read message: %w", err)
			}
			m.ID, m.Author, m.At, posting = id, posted.Author, env.At, r.Seq
			m.Seq, m.Idempotency = r.Seq, env.Idempotency
		}
		return true, nil
	})
	return m, posting, err
}
