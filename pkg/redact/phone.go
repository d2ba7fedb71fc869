package redact

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Phone numbers have no check digit, so they are told from other numbers
// by shape: an international number starts with + or 00; a national one is
// grouped (spaces, dashes, dots, a slash, an area code in parentheses) or
// starts with the trunk 0, or follows a word such as "phone". Dates,
// prices, versions, and numbers after a word such as "order" are refused.

// maxPhoneGroups bounds the groups of one number; a longer run is a list.
const maxPhoneGroups = 8

// phoneShape is what the walk over a candidate learned.
type phoneShape struct {
	start, end int // the span: from '+', '(' or the first digit to the last digit
	groups     [maxPhoneGroups]group
	n          int    // groups read
	digits     int    // digits in all groups
	seps       []byte // the separator before each group after the first: ' ', '-', '.', '/' or ')'
	paren      bool
}

// spaceAt returns the length of a space (ASCII, no-break or narrow no-break)
// at i, or 0.
func spaceAt(text string, i int) int {
	if i >= len(text) {
		return 0
	}
	if text[i] == ' ' {
		return 1
	}
	if r, n := utf8.DecodeRuneInString(text[i:]); r == '\u00a0' || r == '\u202f' {
		return n
	}
	return 0
}

// walkPhone reads digit groups from i and returns the shape and where the
// walk stopped; ok is false for an unclosed parenthesis or too many groups.
func walkPhone(text string, i int, seps []byte) (s phoneShape, stop int, ok bool) {
	s.start, s.seps = i, seps[:0]
	pos := i
	if text[pos] == '+' {
		pos++
	}
	for {
		open := false
		if text[pos] == '(' {
			open, s.paren = true, true
			pos++
		}
		g := group{start: pos}
		for pos < len(text) && isDigit(text[pos]) {
			pos++
		}
		g.end = pos
		if s.n == maxPhoneGroups {
			return s, pos, false
		}
		s.groups[s.n] = g
		s.n++
		s.digits += g.end - g.start
		s.end = pos
		if open {
			if pos >= len(text) || text[pos] != ')' {
				return s, pos, false
			}
			pos++
		}
		k := pos
		sp := spaceAt(text, k)
		k += sp
		var sep byte
		switch {
		case k < len(text) && (text[k] == '-' || text[k] == '.' || text[k] == '/'):
			sep = text[k]
			k++
			if sp > 0 {
				k += spaceAt(text, k) // " - "
			}
		case sp > 0:
			sep = ' '
		case open:
			sep = ')'
		}
		if sep == 0 || k >= len(text) {
			return s, pos, true
		}
		// A parenthesis opens only around the first or second group.
		nextOpen := text[k] == '(' && !s.paren && s.n <= 1 && k+1 < len(text) && isDigit(text[k+1])
		if !isDigit(text[k]) && !nextOpen {
			return s, pos, true
		}
		s.seps = append(s.seps, sep)
		pos = k
	}
}

// notPhoneBefore holds what may not stand right before a phone number.
const notPhoneBefore = ".,/#-_+@=&%$€£¥*"

func findPhones(text string) []Span {
	var spans []Span
	var seps []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if !isDigit(c) && !((c == '+' || c == '(') && i+1 < len(text) && isDigit(text[i+1])) {
			continue
		}
		s, stop, ok := walkPhone(text, i, seps)
		if !ok && c == '(' {
			// "(020-924 8595)": the parenthesis holds the number, not an area code.
			s, stop, ok = walkPhone(text, i+1, s.seps)
		}
		seps = s.seps
		if ok && isPhone(text, &s) {
			spans = append(spans, Span{s.start, s.end, Phone})
		}
		// Every start inside the walked run is glued to it: skip the run.
		i = max(i, stop-1)
	}
	return spans
}

func isPhone(text string, s *phoneShape) bool {
	prev := before(text, s.start)
	if glued(prev) || prev >= 0 && strings.ContainsRune(notPhoneBefore, prev) || inIBAN(text, s.start) {
		return false
	}
	next := after(text, s.end)
	if glued(next) || s.end+1 < len(text) && strings.IndexByte(".,:/-", text[s.end]) >= 0 && isDigit(text[s.end+1]) {
		return false
	}
	first := text[s.groups[0].start:s.groups[0].end]
	if text[s.start] == '+' {
		return s.digits >= 7 && s.digits <= 15 && len(first) <= 15
	}
	intl := strings.HasPrefix(first, "00") && len(first) <= 5 && !s.paren
	if intl && (s.digits < 9 || s.digits > 17) || !intl && (s.digits < 7 || s.digits > 12) {
		return false
	}
	words := wordsBefore(text, s.start)
	if hasKeyword(words, notPhoneWords) || currencyNear(text, s.start, s.end) {
		return false
	}
	if intl {
		return true
	}
	if s.n == 1 {
		return first[0] == '0' && s.digits >= 9 || hasKeyword(words, phoneWords)
	}
	if len(first) > 5 || dateShaped(text, s) || countShaped(text, s) {
		return false
	}
	slashes, dots := 0, 0
	for _, sep := range s.seps {
		switch sep {
		case '/':
			slashes++
		case '.':
			dots++
		}
	}
	if slashes > 1 || slashes == 1 && first[0] != '0' {
		return false
	}
	// Dotted numbers are phones only as 06.12.34.56.78 or 555.123.4567:
	// versions and build numbers have groups of one digit or of five, and
	// short ones (01.02.03.04) are as likely dates or versions.
	if dots > 0 && (dots != len(s.seps) || s.n < 3 || s.digits < 9) {
		return false
	}
	for k := 0; k < s.n; k++ {
		l := s.groups[k].end - s.groups[k].start
		if k > 0 && l < 2 || dots > 0 && (l < 2 || l > 4) {
			return false
		}
	}
	return true
}

// dateShaped reports whether s reads as a date (15.03.2024, 2024-03-15,
// 03/15/2024) or a range of years (1990-2024).
func dateShaped(text string, s *phoneShape) bool {
	num := func(k int) (int, int) {
		g := s.groups[k]
		v := 0
		for _, c := range []byte(text[g.start:g.end]) {
			v = v*10 + int(c-'0')
		}
		return v, g.end - g.start
	}
	year := func(v, l int) bool { return l == 4 && v >= 1900 && v <= 2099 }
	dayOrMonth := func(v, l int) bool { return l <= 2 && v >= 1 && v <= 31 }
	if s.n == 2 && s.seps[0] != ' ' {
		a, al := num(0)
		b, bl := num(1)
		return year(a, al) && year(b, bl)
	}
	if s.n != 3 || s.seps[0] != s.seps[1] {
		return false
	}
	a, al := num(0)
	b, bl := num(1)
	c, cl := num(2)
	return dayOrMonth(a, al) && dayOrMonth(b, bl) && year(c, cl) || year(a, al) && dayOrMonth(b, bl) && dayOrMonth(c, cl)
}

// countShaped reports whether s reads as a count with its thousands grouped
// (7 617 960, 74 538 830): a first group of one or two digits, not 0, and
// then groups of three, with one separator throughout. No national plan
// writes a phone number so; 612 345 678, which Spain and Poland do, stays
// a phone number.
func countShaped(text string, s *phoneShape) bool {
	if s.paren || text[s.groups[0].start] == '0' || s.groups[0].end-s.groups[0].start > 2 {
		return false
	}
	for k := 1; k < s.n; k++ {
		if s.groups[k].end-s.groups[k].start != 3 || s.seps[k-1] != s.seps[0] {
			return false
		}
	}
	return true
}

// currencyNear reports whether a currency sign or code stands right before
// or after the number: 1 234 567 € is a price.
func currencyNear(text string, start, end int) bool {
	const signs = "€$£¥₽₹₺₩"
	b := strings.TrimRight(text[max(0, start-8):start], " \u00a0")
	a := strings.TrimLeft(text[end:min(len(text), end+8)], " \u00a0")
	if r, _ := utf8.DecodeLastRuneInString(b); strings.ContainsRune(signs, r) {
		return true
	}
	if r, _ := utf8.DecodeRuneInString(a); strings.ContainsRune(signs, r) {
		return true
	}
	for _, code := range []string{"EUR", "USD", "GBP", "CHF", "PLN", "zł", "kr", "руб"} {
		if strings.HasSuffix(b, code) || strings.HasPrefix(a, code) {
			return true
		}
	}
	return false
}

// wordsBefore returns up to three words, lower-cased, in the 48 bytes before
// i and after the number, clause or placeholder before it: the context that
// says what a number is. A placeholder ("[phone]") must not count, or
// redacting would change what the text around it means.
func wordsBefore(text string, i int) []string {
	from := max(0, i-48)
	for from < i && !utf8.RuneStart(text[from]) {
		from++
	}
	if k := strings.LastIndexAny(text[from:i], "0123456789;!?\n。；]"); k >= 0 {
		from += k + 1
		for from < i && !utf8.RuneStart(text[from]) {
			from++
		}
	}
	words := strings.FieldsFunc(strings.ToLower(text[from:i]), func(r rune) bool {
		return !unicode.IsLetter(r) && r != '°' && r != 'º'
	})
	return words[max(0, len(words)-3):]
}

// The words that say the number after them is not a phone number, and those
// that say it is one; matched anywhere inside the words before it.
var (
	notPhoneWords = []string{
		"order", "ordine", "sipariş", "طلب", "invoice", "ticket", "tracking", "ref", "case", "customer", "account", "serial", "sku", "isbn",
		"version", "build", "iban", "bestell", "rechnung", "auftrag", "sendung", "kunden", "konto",
		"commande", "facture", "suivi", "pedido", "factura", "seguimiento", "bestelling", "factuur",
		"zending", "zamówien", "faktur", "przesyłk", "заказ", "накладн", "订单", "单号", "注文",
		"n°", "nº",
	}
	phoneWords = []string{
		"tel", "phone", "call", "mobile", "cell", "whatsapp", "sms", "fax", "handy", "ruf", "mobil",
		"tél", "portable", "appel", "teléfono", "telefono", "llam", "móvil", "movil", "telefoon", "bel",
		"komórk", "zadzwo", "телефон", "звон", "电话", "電話", "手机", "携帯", "هاتف", "फ़ोन", "फोन", "τηλ",
	}
)

func hasKeyword(words, keywords []string) bool {
	for _, w := range words {
		for _, k := range keywords {
			if strings.Contains(w, k) {
				return true
			}
		}
	}
	return false
}
