// Package redact replaces personal identifiers in message text by typed
// placeholders before the text leaves Parley for a bot, an integration or a
// training export: e-mail addresses ([email]), phone numbers ([phone]),
// payment card numbers ([card]), IBANs ([iban]) and IP addresses ([ip]).
//
// Detection is by hand-written scanners, each a single pass over the text,
// so redaction takes time linear in the text's length whatever it holds.
// Candidates are validated where a check exists: cards by Luhn, IBANs by the
// ISO 13616 mod-97 check and the country's length, IP addresses by
// net/netip. Phone numbers have no check: a digit run counts as one by its
// shape (a country code, a trunk 0, grouping) and is refused when it reads
// as a date, a price, a version or an order number.
//
// The text may be in any language and script; spans always begin and end
// on UTF-8 sequence boundaries, and the same input always gives the same
// output. Placeholders hold no digit, '@'
// or ':', so redacting a redacted text changes nothing.
//
// The functions are safe for concurrent use.
package redact

import (
	"log/slog"
	"strings"
)

// Kind is the type of an identifier.
type Kind uint8

// The kinds, in the order they win when two candidates overlap: an e-mail
// address may hold digits that read as a phone number, an IBAN digit runs
// that read as a card.
const (
	Email Kind = iota
	IBAN
	Card
	IP
	Phone
	numKinds
)

var kindNames = [numKinds]string{"email", "iban", "card", "ip", "phone"}

// String returns the kind's name: "email", "iban", "card", "ip" or "phone".
func (k Kind) String() string {
	if k >= numKinds {
		return "unknown"
	}
	return kindNames[k]
}

// Placeholder returns what replaces an identifier of kind k: "[email]" ….
func (k Kind) Placeholder() string { return "[" + k.String() + "]" }

// Kinds returns every kind.
func Kinds() []Kind { return []Kind{Email, IBAN, Card, IP, Phone} }

// Span is one identifier found in a text: its byte offsets and kind.
type Span struct {
	Start, End int
	Kind       Kind
}

// Report counts what Redact replaced, per kind. It holds no identifier, so a
// delivery log may keep it.
type Report [numKinds]int

// Total returns how many identifiers were replaced.
func (r Report) Total() int {
	n := 0
	for _, c := range r {
		n += c
	}
	return n
}

// Count returns how many identifiers of kind k were replaced.
func (r Report) Count(k Kind) int {
	if k >= numKinds {
		return 0
	}
	return r[k]
}

// LogValue prints the counts by kind name, omitting zeros.
func (r Report) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, numKinds)
	for k, c := range r {
		if c > 0 {
			attrs = append(attrs, slog.Int(Kind(k).String(), c))
		}
	}
	return slog.GroupValue(attrs...)
}

// Find returns the identifiers in text, ordered by offset, none overlapping.
func Find(text string) []Span {
	// Each scanner returns its kind's spans in order and apart; merged kind
	// by kind in the order of the Kind constants, the earlier kind wins.
	var kept []Span
	for _, scan := range [...]func(string) []Span{findEmails, findIBANs, findCards, findIPs, findPhones} {
		if add := scan(text); len(add) > 0 {
			kept = merge(kept, add)
		}
	}
	return kept
}

// merge adds to kept the spans of add that overlap none of kept, both
// ordered and apart, in time linear in their lengths.
func merge(kept, add []Span) []Span {
	out := make([]Span, 0, len(kept)+len(add))
	i := 0
	for _, s := range add {
		for i < len(kept) && kept[i].End <= s.Start {
			out = append(out, kept[i])
			i++
		}
		if i < len(kept) && kept[i].Start < s.End {
			continue
		}
		out = append(out, s)
	}
	return append(out, kept[i:]...)
}

// Redact returns text with every identifier Find reports replaced by its
// kind's placeholder, and the counts of what it replaced. Invalid UTF-8 in
// text becomes U+FFFD first, so the result is always valid UTF-8.
//
// Find judges a digit run as a whole, so replacing an identifier inside a
// longer run can leave pieces that are identifiers of their own ("0049 30
// 1234567" after a card number glued to it). Redact therefore scans again
// until nothing is found: the result holds nothing Find reports, and
// redacting it again changes nothing. Each pass removes at least one digit,
// '@' or ':', which placeholders never hold, so the loop ends; a second
// pass is rare and a third needs identifiers nested in each other.
func Redact(text string) (string, Report) {
	var r Report
	text = strings.ToValidUTF8(text, "\uFFFD")
	for {
		spans := Find(text)
		if len(spans) == 0 {
			return text, r
		}
		text = replace(text, spans, &r)
	}
}

func replace(text string, spans []Span, r *Report) string {
	var b strings.Builder
	b.Grow(len(text))
	last := 0
	for _, s := range spans {
		b.WriteString(text[last:s.Start])
		b.WriteString(s.Kind.Placeholder())
		last = s.End
		r[s.Kind]++
	}
	b.WriteString(text[last:])
	return b.String()
}

// String returns text redacted, for callers that need no report.
func String(text string) string {
	s, _ := Redact(text)
	return s
}
