package redact

import "strings"

type group struct{ start, end int }

// maxCardGroups bounds the groups findCards keeps of one run: a card in
// groups (4-4-4-4-3) and its CVC make six.
const maxCardGroups = 8

// readGroups reads digit groups from i separated by single seps (any one
// byte of seps, the same throughout). It returns the end of the run and its
// groups, keeping at most limit of them: long reports that it held more.
func readGroups(text string, i int, seps string, groups []group, limit int) (gs []group, end int, long bool) {
	var sep byte
	for {
		j := i
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		if len(groups) < limit {
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
