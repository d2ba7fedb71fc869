package redact

import (
	"unicode"
	"unicode/utf8"
)

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func isASCIILetter(b byte) bool { return 'a' <= b|0x20 && b|0x20 <= 'z' }

func isHex(b byte) bool { return isDigit(b) || 'a' <= b|0x20 && b|0x20 <= 'f' }

// spaceless reports whether r belongs to a script written without spaces
// between words, where an identifier may touch a word.
func spaceless(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar)
}

// glued reports whether r, next to a candidate, makes it part of a longer
// word or number rather than an identifier of its own.
func glued(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 0 && (isDigit(byte(r)) || isASCIILetter(byte(r)))
	}
	return r != utf8.RuneError && (unicode.IsDigit(r) || unicode.IsLetter(r) && !spaceless(r))
}

// before returns the rune that ends at i, or -1 at the start.
func before(s string, i int) rune {
	if i <= 0 {
		return -1
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return r
}

// after returns the rune that starts at i, or -1 at the end.
func after(s string, i int) rune {
	if i >= len(s) {
		return -1
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return r
}
