package redact

import (
	"net/netip"
	"strings"
)

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
