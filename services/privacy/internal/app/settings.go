package app

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// GetSettings returns tenant's settings, privacyapi.DefaultSettings when
// none were set, for an admin of the tenant.
func (a *App) GetSettings(ctx context.Context, p auth.Principal, tenant string) (privacyapi.Settings, error) {
	if err := validToken("tenant", tenant); err != nil {
		return privacyapi.Settings{}, err
	}
	if err := allow(p, tenant, auth.RoleAdmin); err != nil {
		return privacyapi.Settings{}, err
	}
	return a.tenantSettings(ctx, tenant)
}

// tenantSettings returns tenant's settings, privacyapi.DefaultSettings
// when none were set.
func (a *App) tenantSettings(ctx context.Context, tenant string) (privacyapi.Settings, error) {
	s, found, err := a.settings.Get(ctx, tenant)
	if err != nil {
		return privacyapi.Settings{}, fmt.Errorf("read settings: %w", err)
	}
	if !found {
		return privacyapi.DefaultSettings(), nil
	}
	return s.WithDefaults(), nil
}

// PutSettings replaces tenant's settings for an admin of the tenant. The
// change is audited first: one that cannot be audited is not made. Values
// out of range give a *ValidationError and change nothing.
func (a *App) PutSettings(ctx context.Context, p auth.Principal, tenant string, s privacyapi.Settings) (privacyapi.Settings, error) {
	s = s.WithDefaults()
	if err := errors.Join(validToken("tenant", tenant), validSettings(s)); err != nil {
		return privacyapi.Settings{}, err
	}
	if err := allow(p, tenant, auth.RoleAdmin); err != nil {
		return privacyapi.Settings{}, err
	}
	target := fmt.Sprintf("settings retention_days=%d collect_network_data=%t erase_after_close_hours=%d",
		s.RetentionDays, s.CollectNetworkData, s.EraseAfterCloseHours)
	if s.OpenConversationsPerVisitor > 0 || s.MessagesPerConversationPerMinute > 0 {
		target += fmt.Sprintf(" open_conversations_per_visitor=%d messages_per_conversation_per_minute=%d", s.OpenConversationsPerVisitor, s.MessagesPerConversationPerMinute)
	}
	if s.NoticeText != "" || s.NoticeVersion != privacyapi.DefaultNoticeVersion {
		// The text itself is public, but long: its version and length say
		// which notice was put.
		target += fmt.Sprintf(" notice_version=%q notice_characters=%d", s.NoticeVersion, utf8.RuneCountInString(s.NoticeText))
	}
	if s.RetentionSeconds > 0 || s.EraseAfterCloseSeconds > 0 {
		target += fmt.Sprintf(" retention_seconds=%d erase_after_close_seconds=%d", s.RetentionSeconds, s.EraseAfterCloseSeconds)
	}
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{Tenant: tenant, Actor: actor(p), Action: audit.ActionSettingsChange, Target: target}); err != nil {
		return privacyapi.Settings{}, fmt.Errorf("audit settings change: %w", err)
	}
	if err := a.settings.Put(ctx, tenant, s); err != nil {
		return privacyapi.Settings{}, err
	}
	return s, nil
}

func validSettings(s privacyapi.Settings) error {
	var errs []error
	if s.RetentionDays < privacyapi.MinRetentionDays || s.RetentionDays > privacyapi.MaxRetentionDays {
		errs = append(errs, &ValidationError{Field: "retention_days", Reason: fmt.Sprintf("must be %d to %d", privacyapi.MinRetentionDays, privacyapi.MaxRetentionDays)})
	}
	if s.EraseAfterCloseHours < 0 || s.EraseAfterCloseHours > privacyapi.MaxEraseAfterCloseHours {
		errs = append(errs, &ValidationError{Field: "erase_after_close_hours", Reason: fmt.Sprintf("must be 0 (off) to %d", privacyapi.MaxEraseAfterCloseHours)})
	}
	if s.MinGroupSize != 0 && (s.MinGroupSize < analyticsapi.DefaultMinGroupSize || s.MinGroupSize > privacyapi.MaxMinGroupSize) {
		errs = append(errs, &ValidationError{Field: "min_group_size", Reason: fmt.Sprintf("must be 0 (the default) or %d to %d", analyticsapi.DefaultMinGroupSize, privacyapi.MaxMinGroupSize)})
	}
	if s.OpenConversationsPerVisitor < 0 || s.OpenConversationsPerVisitor > privacyapi.MaxOpenConversationsPerVisitor {
		errs = append(errs, &ValidationError{Field: "open_conversations_per_visitor", Reason: fmt.Sprintf("must be 0 (the default of %d) to %d", privacyapi.DefaultOpenConversationsPerVisitor, privacyapi.MaxOpenConversationsPerVisitor)})
	}
	if s.MessagesPerConversationPerMinute < 0 || s.MessagesPerConversationPerMinute > privacyapi.MaxMessagesPerConversationPerMinute {
		errs = append(errs, &ValidationError{Field: "messages_per_conversation_per_minute", Reason: fmt.Sprintf("must be 0 (the default of %d) to %d", privacyapi.DefaultMessagesPerConversationPerMinute, privacyapi.MaxMessagesPerConversationPerMinute)})
	}
	if s.RetentionSeconds < 0 || s.RetentionSeconds > privacyapi.MaxRetentionDays*24*3600 {
		errs = append(errs, &ValidationError{Field: "retention_seconds", Reason: fmt.Sprintf("must be 0 (use retention_days) to %d", privacyapi.MaxRetentionDays*24*3600)})
	}
	if s.EraseAfterCloseSeconds < 0 || s.EraseAfterCloseSeconds > privacyapi.MaxEraseAfterCloseHours*3600 {
		errs = append(errs, &ValidationError{Field: "erase_after_close_seconds", Reason: fmt.Sprintf("must be 0 (use erase_after_close_hours) to %d", privacyapi.MaxEraseAfterCloseHours*3600)})
	}
	if err := validNoticeVersion(s.NoticeVersion); err != nil {
		errs = append(errs, err)
	}
	if !utf8.ValidString(s.NoticeText) || utf8.RuneCountInString(s.NoticeText) > privacyapi.MaxNoticeText {
		errs = append(errs, &ValidationError{Field: "notice_text", Reason: fmt.Sprintf("must be at most %d UTF-8 characters", privacyapi.MaxNoticeText)})
	}
	return errors.Join(errs...)
}
