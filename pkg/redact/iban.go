package redact

import (
	"strings"
)

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
