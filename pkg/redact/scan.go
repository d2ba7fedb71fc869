package redact

import (
	"net/netip"
	"strings"
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

// --- e-mail addresses

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

// --- IBANs

// ibanLength is the length of each country's IBAN in the ISO 13616 registry.
var ibanLength = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
	"LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
	"NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
	"RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
	"SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// maxIBAN is the longest IBAN in ibanLength.
const maxIBAN = 34

// ibanAt reads an IBAN starting at i: compact, or in groups of four
// separated by single spaces. It returns the end of the IBAN, or -1.
func ibanAt(text string, i int) int {
	if i+4 > len(text) || !isASCIILetter(text[i]) || !isASCIILetter(text[i+1]) || !isDigit(text[i+2]) || !isDigit(text[i+3]) {
		return -1
	}
	lower := text[i] >= 'a'
	if lower != (text[i+1] >= 'a') {
		return -1
	}
	want, ok := ibanLength[strings.ToUpper(text[i:i+2])]
	if !ok {
		return -1
	}
	var buf [maxIBAN]byte
	n, j := 0, i
	for n < want && j < len(text) {
		c := text[j]
		switch {
		case isDigit(c) || isASCIILetter(c) && (c >= 'a') == lower:
			if isASCIILetter(c) {
				c &^= 0x20 // upper case for the check
			}
			buf[n] = c
			n++
			j++
		case c == ' ' && n%4 == 0 && j+1 < len(text) && (isDigit(text[j+1]) || isASCIILetter(text[j+1])):
			j++
		default:
			return -1
		}
	}
	if n != want || glued(after(text, j)) || !mod97(buf[:n]) {
		return -1
	}
	return j
}

// mod97 is the ISO 13616 check: the first four characters moved to the end,
// letters as 10 to 35, the number modulo 97 is 1.
func mod97(iban []byte) bool {
	rem := 0
	for k := range iban {
		c := iban[(k+4)%len(iban)]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	return rem == 1
}

func findIBANs(text string) []Span {
	var spans []Span
	for i := 0; i+4 <= len(text); i++ {
		if !isASCIILetter(text[i]) || glued(before(text, i)) {
			continue
		}
		if end := ibanAt(text, i); end > 0 {
			spans = append(spans, Span{i, end, IBAN})
			i = end - 1
		}
	}
	return spans
}

// --- payment cards

// digitRun is a run of digit groups with one kind of separator between them.
type digitRun struct {
	start, end int
	groups     []group
}

type group struct{ start, end int }

// maxCardGroups bounds the groups findCards keeps of one run: a card in
// groups (4-4-4-4-3) and its CVC make six.
const maxCardGroups = 8

// readGroups reads digit groups from i separated by single seps (any one
// byte of seps, the same throughout). It returns the end of the run and its
// groups, keeping at most max of them: long reports that it held more.
func readGroups(text string, i int, seps string, groups []group, max int) (gs []group, end int, long bool) {
	var sep byte
	for {
		j := i
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		if len(groups) < max {
			groups = append(groups, group{i, j})
		} else {
			long = true
		}
		if j+1 >= len(text) || !isDigit(text[j+1]) || strings.IndexByte(seps, text[j]) < 0 || sep != 0 && text[j] != sep {
			return groups, j, long
		}
		sep = text[j]
		i = j + 1
	}
}

func luhn(text string, gs []group) bool {
	sum, double := 0, false
	for g := len(gs) - 1; g >= 0; g-- {
		for k := gs[g].end - 1; k >= gs[g].start; k-- {
			d := int(text[k] - '0')
			if double {
				d *= 2
				if d > 9 {
					d -= 9
				}
			}
			sum += d
			double = !double
		}
	}
	return sum%10 == 0
}

// cardWindow reports whether groups gs form a card number: 13 to 19 digits,
// in one group or in groups of 3 to 6, not starting with 0 (no card network
// issues such numbers), passing Luhn.
func cardWindow(text string, gs []group) bool {
	n := 0
	for _, g := range gs {
		l := g.end - g.start
		if len(gs) > 1 && (l < 3 || l > 6) {
			return false
		}
		n += l
	}
	return n >= 13 && n <= 19 && text[gs[0].start] != '0' && luhn(text, gs)
}

// inIBAN reports whether the group at i follows "XX99 " and maybe more
// groups of four: an invalid IBAN's digit groups are no card or phone.
func inIBAN(text string, i int) bool {
	for i >= 5 && text[i-1] == ' ' {
		head := text[i-5 : i-1]
		if isASCIILetter(head[0]) && isASCIILetter(head[1]) && isDigit(head[2]) && isDigit(head[3]) {
			return true
		}
		for k := range 4 {
			if !isDigit(head[k]) && !isASCIILetter(head[k]) {
				return false
			}
		}
		i -= 5
	}
	return false
}

// cardShaped reports whether groups gs could be a card by length and grouping
// alone: then only the whole run is tried.
func cardShaped(gs []group) bool {
	n := 0
	for _, g := range gs {
		l := g.end - g.start
		if l < 3 || l > 6 {
			return false
		}
		n += l
	}
	return n >= 13 && n <= 19
}

// findCards reads each run of digit groups separated by spaces or dashes.
// A card is the whole run; or, when the whole run is not card-shaped or its
// last group begins another token, the run but its last short group, as
// when a card is followed by "12/27", a date or a four-digit CID; or one group of its own, as when two cards
// are written compact one after the other. Other windows of a long run
// (tracking numbers of 22 digits) are not tried: any 16 digits pass Luhn
// one time in ten.
func findCards(text string) []Span {
	var spans []Span
	var gs []group
	for i := 0; i < len(text); i++ {
		if !isDigit(text[i]) {
			continue
		}
		var end int
		var long bool
		gs, end, long = readGroups(text, i, " -", gs[:0], maxCardGroups)
		prev := before(text, i)
		if glued(prev) || prev == '+' || prev == '.' || prev == ',' || glued(after(text, end)) || inIBAN(text, i) {
			i = end
			continue
		}
		if long {
			// A list of numbers: only a group on its own may be a card.
			for k := i; k < end; k++ {
				j := k
				for j < end && isDigit(text[j]) {
					j++
				}
				if g := [1]group{{k, j}}; cardWindow(text, g[:]) {
					spans = append(spans, Span{k, j, Card})
				}
				k = j
			}
			i = end
			continue
		}
		last := gs[len(gs)-1]
		// "… 1111 1992-07-28": the last group begins the next token.
		cut := end+1 < len(text) && strings.IndexByte("-./", text[end]) >= 0 && isDigit(text[end+1])
		switch {
		case cardWindow(text, gs):
			spans = append(spans, Span{i, end, Card})
		case len(gs) > 2 && last.end-last.start <= 4 && (cut || !cardShaped(gs)) && cardWindow(text, gs[:len(gs)-1]):
			spans = append(spans, Span{i, gs[len(gs)-2].end, Card})
		default:
			for k := range gs {
				if cardWindow(text, gs[k:k+1]) {
					spans = append(spans, Span{gs[k].start, gs[k].end, Card})
				}
			}
		}
		i = end
	}
	return spans
}

// --- IP addresses

func ipRune(b byte) bool { return isHex(b) || b == ':' || b == '.' }

// findIPs reads each run of hex digits, colons and dots and keeps it when
// net/netip parses it as an IPv6 address (with two colons or more) or as an
// IPv4 address of four decimal parts; "1.2.3.4:443" gives the address.
func findIPs(text string) []Span {
	var spans []Span
	for i := 0; i < len(text); i++ {
		if !ipRune(text[i]) {
			continue
		}
		j, seps := i, 0
		for j < len(text) && ipRune(text[j]) {
			if text[j] == '.' || text[j] == ':' {
				seps++
			}
			j++
		}
		if seps < 2 { // a word such as "face", or "12:30"
			i = j
			continue
		}
		if s, ok := ipSpan(text, i, j); ok {
			spans = append(spans, s)
		}
		i = j
	}
	return spans
}

func ipSpan(text string, i, j int) (Span, bool) {
	prev := before(text, i)
	if glued(prev) || glued(after(text, j)) || text[i] == '.' {
		return Span{}, false
	}
	// A sentence's full stop, a colon before a port or a label's colon.
	end := j
	for end > i && text[end-1] == '.' {
		end--
	}
	cand := text[i:end]
	if strings.Count(cand, ":") >= 2 && prev != ':' {
		for _, c := range []string{cand, strings.TrimSuffix(cand, ":")} {
			if !strings.HasSuffix(c, ":") || strings.HasSuffix(c, "::") {
				if a, err := netip.ParseAddr(c); err == nil && a.Is6() && strings.ContainsFunc(c, func(r rune) bool { return r != ':' }) {
					return Span{i, i + len(c), IP}, true
				}
			}
		}
	}
	v4 := cand
	if k := strings.IndexByte(v4, ':'); k >= 0 {
		v4 = v4[:k]
		if k+1 < len(cand) && !isDigit(cand[k+1]) {
			return Span{}, false
		}
	}
	// "1.2.3.4.5" is a version, not an address: the run holds four dots.
	if strings.Count(v4, ".") != 3 || prev == ':' {
		return Span{}, false
	}
	if a, err := netip.ParseAddr(v4); err == nil && a.Is4() {
		return Span{i, i + len(v4), IP}, true
	}
	return Span{}, false
}
