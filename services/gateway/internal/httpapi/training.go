package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// trainingExport answers GET /v1/training-export: the privacy service's
// training export of the caller's tenant as JSON Lines, a message a line,
// then the manifest as the last line. Who may ask is the privacy service's
// rule (an admin); it starts and audits the export, then answers it page
// after page, and the gateway writes and flushes each page as it comes,
// holding one. The manifest's pseudonyms come over several pages too: its
// line is begun with its first page and closed after its last, so a body
// whose last line does not parse was cut off. The answer begins once the
// first page is read, so an export refused outright is a problem; one
// that fails later is cut off (abortAnswer).
func (a *API) trainingExport(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	var started privacyapi.TrainingExport
	if err := a.call(r, privacyapi.TrainingExportSubject, p, privacyapi.TenantArgs{Tenant: p.Tenant}, &started); err != nil {
		return err
	}
	out := &trainingStream{w: w, exportID: started.ExportID}
	err = chatapi.ReadPages(func(after *privacyapi.TrainingCursor) (*privacyapi.TrainingCursor, error) {
		var page privacyapi.TrainingPage
		args := privacyapi.TrainingPageArgs{Tenant: p.Tenant, ExportID: started.ExportID, After: after}
		if err := a.call(r, privacyapi.TrainingPageSubject, p, args, &page); err != nil {
			return nil, err
		}
		return page.Next, out.page(page, after != nil && after.Manifest)
	})
	if err == nil {
		err = out.end()
	}
	if err != nil && out.begun {
		return abortAnswer(fmt.Errorf("stream training export: %w", err))
	}
	return err
}

// trainingLine is a message line of a training export.
type trainingLine struct {
	Type string `json:"type"`
	privacyapi.TrainingMessage
}

// trainingManifest is the last line of a training export, written in
// parts: Visitors is written empty and filled as its pages come.
type trainingManifest struct {
	Type     string   `json:"type"`
	ExportID string   `json:"export_id"`
	Messages int      `json:"messages"`
	Visitors []string `json:"visitors"`
}

// trainingStream writes a training export as its pages come.
type trainingStream struct {
	w        http.ResponseWriter
	exportID string
	buf      bytes.Buffer
	begun    bool
	// messages counts the message lines written; visitors the manifest's
	// pseudonyms.
	messages, visitors int
	// manifest is set once the manifest's line is begun.
	manifest bool
}

// page writes a page: message lines, or the manifest's next pseudonyms,
// its line begun with the first page of the manifest (inManifest: the
// page was asked from a manifest cursor, or follows the last message).
func (s *trainingStream) page(page privacyapi.TrainingPage, inManifest bool) error {
	if !s.begun {
		s.w.Header().Set("Content-Type", "application/x-ndjson")
		s.w.Header().Set("Content-Disposition", `attachment; filename="parley-training.jsonl"`)
		s.w.WriteHeader(http.StatusOK)
		s.begun = true
	}
	s.buf.Reset()
	for _, m := range page.Messages {
		b, err := json.Marshal(trainingLine{Type: "message", TrainingMessage: m})
		if err != nil {
			return fmt.Errorf("encode training line: %w", err)
		}
		s.buf.Write(b)
		s.buf.WriteByte('\n')
		s.messages++
	}
	if inManifest {
		if err := s.beginManifest(); err != nil {
			return err
		}
		for _, v := range page.Visitors {
			if s.visitors > 0 {
				s.buf.WriteByte(',')
			}
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode manifest: %w", err)
			}
			s.buf.Write(b)
			s.visitors++
		}
	}
	return writeFlushed(s.w, s.buf.Bytes())
}

// beginManifest writes the manifest's line up to its visitors, once.
func (s *trainingStream) beginManifest() error {
	if s.manifest {
		return nil
	}
	head, err := openJSON(trainingManifest{Type: "manifest", ExportID: s.exportID, Messages: s.messages, Visitors: []string{}})
	if err != nil {
		return err
	}
	s.buf.Write(head)
	s.manifest = true
	return nil
}

// end closes the manifest's line.
func (s *trainingStream) end() error {
	s.buf.Reset()
	if err := s.beginManifest(); err != nil {
		return err
	}
	s.buf.WriteString("]}\n")
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("write training export: %w", err)
	}
	return nil
}
