package app_test

import (
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// BenchmarkInboxPage lists an inbox of 10,000 open conversations as a
// supervisor, a page of 100 per operation, walking the pages from the first
// to the last and again; it reports the pages' p99.
func BenchmarkInboxPage(b *testing.B) {
	w := newWorld()
	in := w.start(b)
	for i := range 10_000 {
		in.open(b, visitorN(i), "hi")
	}
	in.follow(b)
	var (
		after string
		took  = make([]time.Duration, 0, b.N)
	)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		res, err := in.List(b.Context(), supervisor, chatapi.ListArgs{Page: chatapi.Page[string]{After: after, Limit: 100}})
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		after = deref(res.Next)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms/page")
}

// BenchmarkTranscriptPage reads a page of 100 messages, each a sentence
// with an e-mail address and a phone number in it, as the visitor and as
// the bot assigned with ai consent: what a bot's redaction adds to a page.
func BenchmarkTranscriptPage(b *testing.B) {
	w := newWorld()
	reg := registeredFAQ()
	visitor := visitorN(1)
	// The clock moves on with each post, which the message limit would
	// refuse at once.
	now := time.Now()
	in := w.startWith(b, app.Options{Bots: reg, Consents: &consents{ai: map[string]bool{visitor.ID: true}}, Now: func() time.Time { return now }})
	conv := in.open(b, visitor, "hello")
	if _, err := in.Assign(b.Context(), supervisor, chatapi.AssignArgs{Conversation: conv, Bot: faq.ID}); err != nil {
		b.Fatal(err)
	}
	for range 99 {
		now = now.Add(2 * time.Second)
		if _, err := in.Post(b.Context(), faq, chatapi.PostArgs{Conversation: conv, Text: "Thanks, I will write to ada.lovelace@example.com or call +44 20 7946 0958 about your order tomorrow morning."}); err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range []auth.Principal{visitor, faq} {
		b.Run(string(p.Role), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := in.Messages(b.Context(), p, chatapi.MessagesArgs{Conversation: conv, Page: chatapi.Page[uint64]{Limit: 100}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
