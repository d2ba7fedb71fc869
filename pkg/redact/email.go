package redact

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

func emailRune(r rune, local bool) bool {
	if r < utf8.RuneSelf {
		b := byte(r)
		return isDigit(b) || isASCIILetter(b) || b == '.' || b == '-' || local && (b == '_' || b == '+' || b == '%')
	}
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r)) && !spaceless(r)
}

// findEmails finds local@domain.tld around each '@'. The walks left and right
// stop at the previous and next '@', so the scan is linear.
func findEmails(text string) []Span {
	var spans []Span
	floor := 0 // the walk left never passes the previous '@' or span
	for {
		k := strings.IndexByte(text[floor:], '@')
		if k < 0 {
			return spans
		}
		at := floor + k
		start := at
		for start > floor {
			r, n := utf8.DecodeLastRuneInString(text[floor:start])
			if !emailRune(r, true) {
				break
			}
			start -= n
		}
		for start < at && text[start] == '.' {
			start++
		}
		end := at + 1
		for end < len(text) {
			r, n := utf8.DecodeRuneInString(text[end:])
			if !emailRune(r, false) {
				break
			}
			end += n
		}
		for end > at+1 && (text[end-1] == '.' || text[end-1] == '-') {
			end--
		}
		if start < at && at-start <= 64 && validDomain(text[at+1:end]) && !glued(before(text, start)) {
			spans = append(spans, Span{start, end, Email})
			floor = end
		} else {
			floor = at + 1
		}
	}
}

// validDomain reports whether d is dot-separated labels, none empty or
// edged with '-', ending in a top-level domain of two or more letters.
func validDomain(d string) bool {
	labels, tld := 0, ""
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		labels, tld = labels+1, l
	}
	if labels < 2 || utf8.RuneCountInString(tld) < 2 {
		return false
	}
	for _, r := range tld {
		if !unicode.IsLetter(r) {
			return false
		}
	}
	return true
}
