package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/parley-chat/parley/pkg/chatapi"
)

// exportStream writes an export document (exportDoc) as the privacy
// service's pages come, each page flushed to the client: the gateway holds
// one page, never the history. The bytes are those of the whole document encoded at
// once. A conversation split between two pages is continued, not repeated.
type exportStream struct {
	w   http.ResponseWriter
	buf bytes.Buffer
	// open is the conversation whose messages are being written; "" before
	// the first.
	open        string
	convs, msgs int
	begun       bool
}

// start answers 200 and writes doc up to its conversations, which must be
// empty: the pages' conversations follow.
func (s *exportStream) start(doc exportDoc) error {
	head, err := openJSON(doc)
	if err != nil {
		return err
	}
	s.w.Header().Set("Content-Type", "application/json")
	s.w.WriteHeader(http.StatusOK)
	s.begun = true
	if _, err := s.w.Write(head); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	return nil
}

// exportPage is the part of a chatapi.ExportResult the gateway reads: the
// messages pass through as the chat service encoded them, in the API's
// shape already (chatapi.Message), checked but not decoded and encoded
// again, as a transcript's page does (messagesReply), and written from the
// page as it came, not copied out of it first.
type exportPage struct {
	Profile       *chatapi.Profile `json:"profile"`
	Conversations []struct {
		chatapi.Summary
		Messages itemSpans `json:"messages"`
	} `json:"conversations"`
	Next *chatapi.ExportCursor `json:"next"`
	raw  []byte                // the page's JSON, into which Messages point
}

// decodeExportPage decodes the JSON of an export page, its messages as
// spans into raw.
func decodeExportPage(raw []byte) (exportPage, error) {
	page := exportPage{raw: raw}
	if err := unmarshalReply(raw, &page); err != nil {
		return exportPage{}, err
	}
	return page, nil
}

// page writes a page's conversations and flushes them.
func (s *exportStream) page(page exportPage) error {
	convs := page.Conversations
	s.buf.Reset()
	for _, c := range convs {
		if c.ID != s.open {
			if s.open != "" {
				s.buf.WriteString("]}")
			}
			if s.convs > 0 {
				s.buf.WriteByte(',')
			}
			head, err := openJSON(exportedConversation{conversation: viewOf(c.Summary), Messages: []chatapi.Message{}})
			if err != nil {
				return err
			}
			s.buf.Write(head)
			s.open, s.convs, s.msgs = c.ID, s.convs+1, 0
		}
		for _, m := range c.Messages {
			if s.msgs > 0 {
				s.buf.WriteByte(',')
			}
			s.buf.Write(m.in(page.raw))
			s.msgs++
		}
	}
	return writeFlushed(s.w, s.buf.Bytes())
}

// writeFlushed writes b and flushes it to the client: a streamed answer's
// page, sent as it comes.
func writeFlushed(w http.ResponseWriter, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		return fmt.Errorf("flush export: %w", err)
	}
	return nil
}

// end closes the open conversation, if any, and the document.
func (s *exportStream) end() error {
	tail := "]}\n"
	if s.open != "" {
		tail = "]}" + tail
	}
	if _, err := s.w.Write([]byte(tail)); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	return nil
}

// openJSON is the JSON of v, whose last field is an empty array, without
// the "]}" that closes that array and v: the start of v, to which the
// array's items are written as they come.
func openJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode export: %w", err)
	}
	if !bytes.HasSuffix(b, []byte("[]}")) {
		return nil, fmt.Errorf("encode export: %T does not end in an empty array", v)
	}
	return b[:len(b)-2], nil
}
