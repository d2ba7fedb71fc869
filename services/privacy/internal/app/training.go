package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/redact"
	"github.com/parley-chat/parley/pkg/stream"
)

// ChatLog reads the CHAT stream, whose events the privacy service opens
// with its visitors' keys (a training export).
type ChatLog interface {
	// LastSeq returns the sequence of the stream's last message; 0 when
	// it holds none.
	LastSeq(ctx context.Context) (uint64, error)
	// Read calls each with the messages on subjects matching filter
	// stored after sequence after, in stream order, until each returns
	// false or an error (which Read returns) or none is left. A message
	// that is no event comes as the zero Envelope, so that a reader still
	// moves past its sequence.
	Read(ctx context.Context, filter string, after uint64, each func(seq uint64, e event.Envelope) (bool, error)) error
}

const (
	// trainingReadsPerPage bounds the CHAT events one page of a training
	// export reads, so that a stretch of events with nothing to export (no
	// consent) answers an empty page in time rather than none.
	trainingReadsPerPage = 2000
	// trainingManifestItems bounds the pseudonyms of a manifest page: 64
	// hex digits each, quoted and separated, within chatapi.PageBytes.
	trainingManifestItems = chatapi.PageBytes / 80
)

// trainingRecord is a training export as PRIVACY recorded it.
type trainingRecord struct {
	id      string
	tenant  string
	by      audit.Actor
	at      time.Time
	through uint64
	// seq is the PRIVACY sequence of its request: the manifest is of the
	// consents stored up to it.
	seq uint64
}

// StartTrainingExport starts a training export of tenant for p, an admin
// of it: it is audited, then recorded in PRIVACY with the last sequence of
// CHAT, which its pages read up to. Its lines follow from TrainingPage.
func (a *App) StartTrainingExport(ctx context.Context, p auth.Principal, tenant string) (privacyapi.TrainingExport, error) {
	if err := validToken("tenant", tenant); err != nil {
		return privacyapi.TrainingExport{}, err
	}
	if err := allow(p, tenant, auth.RoleAdmin); err != nil {
		return privacyapi.TrainingExport{}, err
	}
	// The export is recorded on the admin's own privacy subject.
	if err := validToken("principal", p.ID); err != nil {
		return privacyapi.TrainingExport{}, err
	}
	if a.chatLog == nil {
		return privacyapi.TrainingExport{}, fmt.Errorf("training export: %w", ErrNotFound)
	}
	through, err := a.chatLog.LastSeq(ctx)
	if err != nil {
		return privacyapi.TrainingExport{}, fmt.Errorf("training export: %w", err)
	}
	exportID := event.NewID()
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{
		Tenant: tenant, Actor: actor(p), Action: audit.ActionTrainingExport, Target: "training_export:" + exportID,
	}); err != nil {
		return privacyapi.TrainingExport{}, fmt.Errorf("audit training export: %w", err)
	}
	e, err := event.NewClear(privacyapi.TrainingExportRequestedType, tenant, p.ID, p.ID, a.now(),
		privacyapi.TrainingExportRequested{ExportID: exportID, By: actor(p), Through: through})
	if err != nil {
		return privacyapi.TrainingExport{}, err
	}
	e.ID = exportID
	seq, err := a.events.Append(ctx, e)
	if err != nil {
		return privacyapi.TrainingExport{}, fmt.Errorf("record training export: %w", err)
	}
	if err := a.index.waitApplied(ctx, seq); err != nil {
		return privacyapi.TrainingExport{}, err
	}
	return privacyapi.TrainingExport{ExportID: exportID}, nil
}

// TrainingPage returns the page after args.After of the training export
// args.ExportID, which p must have started within
// privacyapi.ExportPagesWithin: its messages, read from CHAT in stream
// order, then the pseudonyms of its manifest. A message is in it when its
// visitor's `ai` consent held when it was written and holds at the
// export's start, and the visitor's keys are there (not erased, not
// expired); an opening message withdrawn is not. The manifest is every
// visitor of the tenant whose `ai` consent holds at the export's start and
// whose keys are there when the manifest is read: a visitor erased during
// the export is left out of it, though some of their lines may have been
// read before.
func (a *App) TrainingPage(ctx context.Context, p auth.Principal, args privacyapi.TrainingPageArgs) (privacyapi.TrainingPage, error) {
	if err := errors.Join(validToken("tenant", args.Tenant), validToken("export_id", args.ExportID)); err != nil {
		return privacyapi.TrainingPage{}, err
	}
	if err := allow(p, args.Tenant, auth.RoleAdmin); err != nil {
		return privacyapi.TrainingPage{}, err
	}
	// Consents and erasures stored before this page are the page's to
	// honour, whichever instance stored them.
	if err := a.CatchUp(ctx); err != nil {
		return privacyapi.TrainingPage{}, err
	}
	rec, ok, err := a.training(ctx, args.Tenant, p, args.ExportID)
	if err != nil {
		return privacyapi.TrainingPage{}, fmt.Errorf("training export %s of %s: %w", args.ExportID, args.Tenant, err)
	}
	if !ok || rec.by != actor(p) || a.chatLog == nil ||
		!a.now().Before(rec.at.Add(privacyapi.ExportPagesWithin)) {
		return privacyapi.TrainingPage{}, fmt.Errorf("training export %s of %s: %w", args.ExportID, args.Tenant, ErrNotFound)
	}
	page := privacyapi.TrainingPage{Messages: []privacyapi.TrainingMessage{}, Visitors: []string{}}
	if args.After != nil && args.After.Visitor != "" {
		// A cursor of a version that paged the manifest by visitor: going
		// on from it here would repeat the manifest's start.
		return privacyapi.TrainingPage{}, &ValidationError{Field: "after", Reason: "written by an older version: start the export again"}
	}
	if args.After != nil && args.After.Manifest {
		err = a.trainingManifest(ctx, rec, args.After.Seq, &page)
	} else {
		var after uint64
		if args.After != nil {
			after = args.After.Seq
		}
		err = a.trainingMessages(ctx, rec, after, &page)
	}
	if err != nil {
		return privacyapi.TrainingPage{}, fmt.Errorf("training export %s of %s: %w", args.ExportID, args.Tenant, err)
	}
	return page, nil
}

// trainingMessages fills page with the messages after the CHAT sequence
// after, within chatapi.PageBytes, and its Next.
func (a *App) trainingMessages(ctx context.Context, rec trainingRecord, after uint64, page *privacyapi.TrainingPage) error {
	last, read, size := after, 0, 0
	done, full := after >= rec.through, false
	if !done {
		err := a.chatLog.Read(ctx, stream.ChatSubject(rec.tenant, "*"), after, func(seq uint64, e event.Envelope) (bool, error) {
			if seq > rec.through {
				done = true
				return false, nil
			}
			m, ok, err := a.trainingMessage(ctx, rec, seq, e, &read)
			if err != nil {
				return false, err
			}
			if ok {
				b, err := json.Marshal(m)
				if err != nil {
					return false, err
				}
				// A page's first message is taken whatever its size, so
				// that paging moves on.
				if size+len(b) > chatapi.PageBytes && len(page.Messages) > 0 {
					full = true
					return false, nil
				}
				size += len(b) + 1
				page.Messages = append(page.Messages, m)
			}
			last, read = seq, read+1
			if seq == rec.through {
				done = true
				return false, nil
			}
			full = read >= trainingReadsPerPage
			return !full, nil
		})
		if err != nil {
			return err
		}
		// Read ran out of events below through: the rest expired or was
		// erased.
		done = done || !full
	}
	if done {
		page.Next = &privacyapi.TrainingCursor{Manifest: true}
	} else {
		page.Next = &privacyapi.TrainingCursor{Seq: last}
	}
	return nil
}

// trainingMessage returns the line of the event e at CHAT sequence seq,
// and false when e is no message or not for the export. It adds to read
// the events it reads besides e.
func (a *App) trainingMessage(ctx context.Context, rec trainingRecord, seq uint64, e event.Envelope, read *int) (privacyapi.TrainingMessage, bool, error) {
	if e.Type != event.ConversationOpened && e.Type != event.MessagePosted || e.Tenant != rec.tenant {
		return privacyapi.TrainingMessage{}, false, nil
	}
	// The consent, from the index, before any key is read: most events of
	// a tenant are left out here.
	var held bool
	err := a.read(ctx, subjectID{rec.tenant, e.Person}, func(st *subjectState) {
		held = st.aiAt(rec.at) && st.aiAt(e.At)
	})
	if !held || err != nil {
		return privacyapi.TrainingMessage{}, false, err
	}
	k, ok, err := a.HeldKeys(ctx, rec.tenant, e.Person)
	if !ok || err != nil {
		return privacyapi.TrainingMessage{}, false, err
	}
	var role, text string
	switch e.Type {
	case event.ConversationOpened:
		var o event.Opened
		if e.Open(k.Data, &o) != nil {
			return privacyapi.TrainingMessage{}, false, nil
		}
		withdrawn, err := a.openingWithdrawn(ctx, k, seq, e, read)
		if withdrawn || err != nil {
			return privacyapi.TrainingMessage{}, false, err
		}
		role, text = string(auth.RoleVisitor), o.Text
	default:
		var po event.Posted
		if e.Open(k.Data, &po) != nil {
			return privacyapi.TrainingMessage{}, false, nil
		}
		role, text = trainingRole(po.Author.Role), po.Text
	}
	return privacyapi.TrainingMessage{
		Conversation: privacyapi.TrainingPseudonym(k.Pseudonym, e.Aggregate),
		Visitor:      privacyapi.TrainingPseudonym(k.Pseudonym, e.Person),
		Role:         role,
		Text:         redact.String(text),
	}, true, nil
}

// trainingRole is the role a training export gives an author: visitor and
// bot as they are, every member of staff an agent.
func trainingRole(role string) string {
	switch r := auth.Role(role); {
	case r == auth.RoleVisitor, r == auth.RoleBot:
		return role
	}
	return string(auth.RoleAgent)
}

// openingWithdrawn reports whether the visitor withdrew the opening
// message e, at CHAT sequence seq: its event stays in CHAT (the
// conversation is folded from it), and what withdrew it comes later in the
// conversation, so the rest of the conversation is read for it, each event
// added to read (the page's budget).
func (a *App) openingWithdrawn(ctx context.Context, k personkey.Keys, seq uint64, e event.Envelope, read *int) (bool, error) {
	withdrawn := false
	err := a.chatLog.Read(ctx, stream.ChatSubject(e.Tenant, e.Aggregate), seq, func(_ uint64, later event.Envelope) (bool, error) {
		*read++
		var w event.Withdrawn
		if later.Type == event.MessageWithdrawn && later.Open(k.Data, &w) == nil && w.Opening {
			withdrawn = true
		}
		return !withdrawn, nil
	})
	return withdrawn, err
}

// trainingManifest fills page with the pseudonyms of the manifest's
// visitors met in the tenant's privacy events after the PRIVACY sequence
// after, and its Next. The manifest is of the consents stored up to the
// export's request: a visitor is met at the last of theirs stored by then,
// so each comes once, without the manifest holding them all, and it ends
// there whatever is stored after. A page reads at most
// trainingReadsPerPage events.
func (a *App) trainingManifest(ctx context.Context, rec trainingRecord, after uint64, page *privacyapi.TrainingPage) error {
	var ids []string
	last, read, more := after, 0, false
	err := a.events.Scan(ctx, rec.tenant, after, func(se StoredEvent) (bool, error) {
		if se.Seq > rec.seq {
			return false, nil
		}
		if len(ids) == trainingManifestItems || read == trainingReadsPerPage {
			more = true
			return false, nil
		}
		last, read = se.Seq, read+1
		if se.Event.Type != event.ConsentRecorded {
			return true, nil
		}
		var listed bool
		err := a.read(ctx, subjectID{rec.tenant, se.Event.Aggregate}, func(st *subjectState) {
			c, ok := st.lastConsent(func(c privacyapi.ConsentResult) bool { return c.Seq <= rec.seq })
			listed = ok && c.Seq == se.Seq && c.Consent.AI
		})
		if err != nil {
			return false, err
		}
		if listed {
			ids = append(ids, se.Event.Aggregate)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		k, ok, err := a.HeldKeys(ctx, rec.tenant, id)
		if err != nil {
			return err
		}
		if ok {
			page.Visitors = append(page.Visitors, privacyapi.TrainingPseudonym(k.Pseudonym, id))
		}
	}
	slices.Sort(page.Visitors)
	if more {
		page.Next = &privacyapi.TrainingCursor{Manifest: true, Seq: last}
	}
	return nil
}

// aiAt reports whether the subject held `ai` consent at at.
func (st *subjectState) aiAt(at time.Time) bool {
	c, ok := st.consentAt(at)
	return ok && c.Consent.AI
}

// training returns the training export id of tenant that p started, as
// recorded on p's own subject; false when p started none such.
func (a *App) training(ctx context.Context, tenant string, p auth.Principal, id string) (trainingRecord, bool, error) {
	if validToken("principal", p.ID) != nil {
		return trainingRecord{}, false, nil
	}
	var (
		rec trainingRecord
		ok  bool
	)
	err := a.read(ctx, subjectID{tenant, p.ID}, func(st *subjectState) {
		i := slices.IndexFunc(st.trainings, func(r trainingRecord) bool { return r.id == id })
		if ok = i >= 0; ok {
			rec = st.trainings[i]
		}
	})
	return rec, ok, err
}
