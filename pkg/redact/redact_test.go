package redact_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/redact"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name   string
		give   string
		want   string
		counts map[redact.Kind]int
	}{
		{
			name:   "each kind",
			give:   "Mail anna@example.com, call +49 30 1234567, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, from 203.0.113.7.",
			want:   "Mail [email], call [phone], card [card], IBAN [iban], from [ip].",
			counts: map[redact.Kind]int{redact.Email: 1, redact.Phone: 1, redact.Card: 1, redact.IBAN: 1, redact.IP: 1},
		},
		{name: "nothing", give: "Order #12345678 shipped on 15.03.2024 for €1.234,56", want: "Order #12345678 shipped on 15.03.2024 for €1.234,56"},
		{name: "empty", give: "", want: ""},
		{name: "invalid utf-8 becomes U+FFFD", give: "a\xffb anna@example.com", want: "a\uFFFDb [email]", counts: map[redact.Kind]int{redact.Email: 1}},
		{name: "two of a kind", give: "a@example.com b@example.com", want: "[email] [email]", counts: map[redact.Kind]int{redact.Email: 2}},
		{name: "an email with digits is one email", give: "0612345678@example.com", want: "[email]", counts: map[redact.Kind]int{redact.Email: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, report := redact.Redact(tt.give)
			if got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.give, got, tt.want)
			}
			gotCounts := map[redact.Kind]int{}
			for _, k := range redact.Kinds() {
				if c := report.Count(k); c > 0 {
					gotCounts[k] = c
				}
			}
			if diff := cmp.Diff(tt.counts, gotCounts, cmpEmptyMap); diff != "" {
				t.Errorf("Redact(%q) report (-want +got):\n%s", tt.give, diff)
			}
		})
	}
}

var cmpEmptyMap = cmp.Comparer(func(a, b map[redact.Kind]int) bool {
	return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b)
})

// TestReportLogsNoIdentifier: what a delivery log keeps of a redaction is
// kinds and counts, never the values.
func TestReportLogsNoIdentifier(t *testing.T) {
	text := "anna@example.com or +49 30 1234567 or anna2@example.com"
	_, report := redact.Redact(text)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("delivered", "redacted", report)
	got := buf.String()
	if !strings.Contains(got, `"redacted":{"email":2,"phone":1}`) {
		t.Errorf("log = %s, want the counts by kind", got)
	}
	for _, v := range []string{"anna", "1234567", "example"} {
		if strings.Contains(got, v) {
			t.Errorf("log = %s, holds %q", got, v)
		}
	}
	if report.Total() != 3 {
		t.Errorf("report.Total() = %d, want 3", report.Total())
	}
}

// FuzzRedact: Redact never panics, gives valid UTF-8, leaves nothing Find
// detects, and a second pass changes nothing; Find's spans are ordered,
// apart, and on rune boundaries.
func FuzzRedact(f *testing.F) {
	for _, h := range handwritten {
		f.Add(parseMarked(h.text).Text)
	}
	for _, r := range generateCorpus()[:200] {
		f.Add(r.Text)
	}
	f.Add("a@b.co@c.de 1.2.3.4.5 ::1:: +1 (2) 3 4 5 6 7 8 9 \xff\xfe DE89 3704")
	f.Fuzz(func(t *testing.T, text string) {
		out, report := redact.Redact(text)
		if !utf8.ValidString(out) {
			t.Fatalf("Redact(%q) = %q, not valid UTF-8", text, out)
		}
		if again := redact.Find(out); len(again) > 0 {
			t.Fatalf("Redact(%q) = %q, still holds %v %q", text, out, again[0].Kind, out[again[0].Start:again[0].End])
		}
		if twice, r2 := redact.Redact(out); twice != out || r2.Total() != 0 {
			t.Fatalf("Redact(Redact(%q)) = %q, want %q", text, twice, out)
		}
		if !utf8.ValidString(text) {
			return // Redact made it valid first: the checks above were on that text
		}
		spans := redact.Find(text)
		if report.Total() < len(spans) {
			t.Fatalf("Find(%q) = %d spans, Redact reported %d", text, len(spans), report.Total())
		}
		last := 0
		for _, s := range spans {
			if s.Start < last || s.End <= s.Start || s.End > len(text) {
				t.Fatalf("Find(%q) = %v: spans out of order or overlapping", text, spans)
			}
			if !boundary(text, s.Start) || !boundary(text, s.End) {
				t.Fatalf("Find(%q): span %v splits a UTF-8 sequence", text, s)
			}
			last = s.End
		}
	})
}

func boundary(s string, i int) bool { return i == len(s) || utf8.RuneStart(s[i]) }

// The corpus, as it is: mostly short messages, a third of them clean.
func BenchmarkRedact(b *testing.B) {
	recs := loadCorpus(b)
	size := 0
	for _, r := range recs {
		size += len(r.Text)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range recs {
			redact.String(r.Text)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/message")
}

// Text with no identifier: what most messages are.
func BenchmarkRedactClean(b *testing.B) {
	text := strings.Repeat("Hello, I have a question about my order from last week; it has not arrived yet. ", 4)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		redact.String(text)
	}
}

// Adversarial inputs, near-identifiers everywhere, at 8 and 128 KiB: the
// same throughput at both sizes shows the scan stays linear.
func BenchmarkRedactAdversarial(b *testing.B) {
	for _, tt := range []struct{ name, unit string }{
		{"ats", "a@"},
		{"digits", "1 "},
		{"dots", "1."},
		{"colons", "a:"},
		{"iban-heads", "DE89 "},
		{"parens", "(1"},
	} {
		for _, size := range []int{8 << 10, 128 << 10} {
			text := strings.Repeat(tt.unit, size/len(tt.unit))
			b.Run(fmt.Sprintf("%s/%dKiB", tt.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				for b.Loop() {
					redact.String(text)
				}
			})
		}
	}
}
