package redact_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// The labelled corpus (testdata/corpus.jsonl) is generated from the seeded
// templates below, plus the hand-written cases in corpus_hand_test.go. To grow
// it, add templates or values, or raise corpusSize, then run
//
//	go test -run TestCorpusIsGenerated -update ./pkg/redact
//
// and commit the file. Templates are written in a small markup: {kind} is a
// slot filled by a value generator; in hand-written cases {{kind|value}}
// marks an identifier by hand. Values of the kinds that are not identifiers
// (dates, prices, order numbers …) are look-alikes that must stay.

const (
	corpusSeed = 14_3
	corpusSize = 1200
)

// record is one line of the corpus: offsets are UTF-8 byte offsets in Text.
type record struct {
	ID    string       `json:"id"`
	Lang  string       `json:"lang"`
	Text  string       `json:"text"`
	Spans []recordSpan `json:"spans"`
}

type recordSpan struct {
	Start int    `json:"start"`
	End   int    `json:"end"`
	Type  string `json:"type"`
}

var templates = map[string][]string{
	"en": {
		"Hi, you can reach me at {email} or on {phone}.",
		"My card number is {card}, expiry {date}.",
		"Please refund {price} to {iban} (order {order}).",
		"The login came from {ip} at {time}, on {date}.",
		"Tracking {tracking}: the app version {version} crashed again",
		"call me: {phone}",
		"Card {badcard} was declined, so I used {card}",
		"Is this IBAN right? {badiban}",
		"contact:\n{email}\n{phone}",
		"my number ({phone}) changed on {date}",
		"Write to {noemail}, not to {email}!",
		"Order {order} cost {price}; my IP is {ip}",
		"The city has {count} inhabitants, write to {email}",
	},
	"de": {
		"Hallo, meine E-Mail ist {email}, Telefon {phone}.",
		"Bitte überweisen Sie {price} auf {iban}. Bestellnummer {order}.",
		"Meine Kreditkarte {card} wurde am {date} belastet.",
		"Der Zugriff kam von {ip} um {time} Uhr.",
		"Version {version} kostet {price}, Sendungsnummer {tracking}.",
		"Rufen Sie mich an unter {phone}!",
		"Die IBAN {badiban} wird abgelehnt, nehmen Sie {iban}",
		"Karte {badcard} geht nicht – Rechnung vom {date}",
	},
	"fr": {
		"Bonjour, mon adresse est {email} et mon numéro {phone}.",
		"Voici mon IBAN : {iban}",
		"Ma carte {card} a été refusée le {date}.",
		"Connexion depuis {ip} à {time}.",
		"Commande n° {order}, montant {price}, version {version}.",
		"Appelez-moi au {phone} (après {time})",
		"L'IBAN {badiban} est faux ; écrivez à {email}.",
		"Nous avons {count} clients, appelez le {phone}.",
	},
	"es": {
		"Hola, mi correo es {email} y mi teléfono {phone}.",
		"Mi IBAN es {iban}, pedido {order}.",
		"Pagué {price} con la tarjeta {card} el {date}.",
		"La IP era {ip}; número de seguimiento {tracking}.",
		"¿Me llamas al {phone}? Gracias.",
		"La tarjeta {badcard} no funciona.",
	},
	"nl": {
		"Mijn e-mailadres is {email}, bel me op {phone}.",
		"Graag terugstorten op {iban}.",
		"Kaartnummer {card}, bestelling {order}.",
		"Inlog vanaf {ip} om {time}, versie {version}.",
		"Rekening {badiban} klopt niet; factuur van {date}.",
	},
	"pl": {
		"Mój e-mail to {email}, telefon: {phone}.",
		"Numer konta {iban}, zamówienie {order}.",
		"Zapłaciłem kartą {card} dnia {date}, kwota {price}.",
		"Adres IP {ip}.",
		"Proszę dzwonić pod {phone} po {time}.",
	},
	"it": {
		"Ciao, la mia email è {email}, cellulare {phone}.",
		"Il mio IBAN: {iban}. Ordine {order} del {date}.",
	},
	"ru": {
		"Мой email {email}, телефон {phone}.",
		"Оплата картой {card} {date}, сумма {price}.",
		"IP-адрес {ip}, номер заказа {order}.",
		"Счёт {iban}, версия {version}.",
	},
	"el": {
		"Το email μου είναι {email} και το τηλέφωνό μου {phone}.",
		"Η κάρτα {card} χρεώθηκε {price} στις {date}.",
	},
	"ar": {
		"بريدي الإلكتروني {email} ورقم هاتفي {phone}.",
		"رقم الحساب {iban} والطلب {order}.",
	},
	"zh": {
		"我的邮箱是{email}，电话{phone}。",
		"信用卡号{card}，日期{date}。",
		"订单号{order}，IP地址{ip}。",
	},
	"ja": {
		"メールは{email}、電話は{phone}です。",
		"口座は{iban}です。価格{price}。",
	},
	"hi": {
		"मेरा ईमेल {email} है और फ़ोन {phone} है।",
		"कार्ड {card} से {price} का भुगतान {date} को हुआ।",
	},
	"tr": {
		"E-posta adresim {email}, telefonum {phone}.",
		"IBAN numaram {iban}, sipariş {order}.",
	},
}

// kindsOfSlot maps a slot to the kind it labels; look-alike slots label none.
var kindsOfSlot = map[string]string{"email": "email", "phone": "phone", "card": "card", "iban": "iban", "ip": "ip"}

// gen fills slots deterministically from one seeded source.
type gen struct{ r *rand.Rand }

func (g gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

// digits replaces each ~ in f with a random digit, each N with 2 to 9.
func (g gen) digits(f string) string {
	var b strings.Builder
	for _, c := range f {
		switch c {
		case '~':
			b.WriteByte(byte('0' + g.r.IntN(10)))
		case 'N':
			b.WriteByte(byte('2' + g.r.IntN(8)))
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// slot returns the text around a value and the value: a wrapper such as
// "<" ">" stays outside the span.
func (g gen) slot(kind, lang string) (pre, val, post string) {
	switch kind {
	case "email":
		local := g.pick([]string{"john.doe", "anna", "m.mueller", "zoë.dupont", "j_smith", "info", "support+chat", "k.kowalski", "ivan.petrov", "li.wei", "maria-garcia", "user123", "O.Brien", "x"})
		domain := g.pick([]string{"example.com", "example.org", "mail.example.co.uk", "beispiel.de", "exemple.fr", "ejemplo.es", "voorbeeld.nl", "przyklad.pl", "example.jp", "sub.example.travel"})
		if lang == "ru" && g.r.IntN(3) == 0 {
			local, domain = "ivan", "пример.рф"
		}
		val = local + "@" + domain
		if g.r.IntN(6) == 0 {
			val = strings.ToUpper(val)
		}
		w := g.pick([]string{"", "", "", "<>", "()", "mailto:", "\"\""})
		switch w {
		case "":
		case "mailto:":
			pre = w
		default:
			pre, post = w[:1], w[1:]
		}
		return pre, val, post
	case "phone":
		return "", g.digits(g.pick(phoneFormats)), ""
	case "card":
		return "", g.card(true), ""
	case "badcard":
		return "", g.card(false), ""
	case "iban":
		return "", g.iban(true), ""
	case "badiban":
		return "", g.iban(false), ""
	case "ip":
		return g.ip()
	case "date":
		d, m, y := 1+g.r.IntN(28), 1+g.r.IntN(12), 1990+g.r.IntN(40)
		return "", g.pick([]string{
			fmt.Sprintf("%02d.%02d.%d", d, m, y), fmt.Sprintf("%d-%02d-%02d", y, m, d),
			fmt.Sprintf("%02d/%02d/%d", m, d, y), fmt.Sprintf("%d/%d/%d", d, m, y), fmt.Sprintf("%d.%d.%d", d, m, y),
		}), ""
	case "time":
		return "", g.digits(g.pick([]string{"1~:3~", "0~:0~:~~", "2~:1~"})), ""
	case "price":
		return "", g.digits(g.pick([]string{"€1.2~~,~~", "$1,2~~.00", "1 2~~,00 €", "N ~~~ ~~~ €", "N.~~~.~~~ EUR", "¥~~,~~~", "PLN N ~~~ ~~~", "£~~.~~", "N~ ~~~ ~~~ ₽", "$N ~~~ ~~~"})), ""
	case "order":
		return "", g.digits(g.pick([]string{"#N~~~~~~~", "A-20~~-~~~~~~", "N~~~~~~~", "ORD-~~~~-~~~~", "N~~~ ~~~~", "N~~~~~~~~~"})), ""
	case "version":
		return "", g.digits(g.pick([]string{"vN.~.~", "N.~~.~", "10.0.1~~~~.~~~~", "N.~.~~-beta", "v1.N.3.4", "N.~"})), ""
	case "tracking":
		return "", g.digits(g.pick([]string{"1Z999AA1~~~~~~~~~~", "JJD000~~~~~~~~~~~~~~~", "9400 1~~~ ~~~~ ~~~~ ~~~~ ~~", "RR~~~~~~~~~FR", "L~~~~~~~~~DE"})), ""
	case "count":
		// Thousands grouped by spaces, shaped like 612 345 678: told apart
		// from a phone number by nothing but the words around it.
		return "", g.digits(g.pick([]string{"N ~~~ ~~~", "N~ ~~~ ~~~", "N~~ ~~~ ~~~", "N\u00a0~~~\u00a0~~~"})), ""
	case "noemail":
		return "", g.pick([]string{"john at example dot com", "@support_team", "user@localhost", "name@domain", "info(at)example.com", "a@b.c"}), ""
	}
	panic("no slot " + kind)
}

var phoneFormats = []string{
	"+49 30 ~~~~~~~", "+49 (0)30 ~~~~ ~~~~", "030 ~~~~~~~~", "030/~~~~~~~", "0151 ~~~~~~~~", "+49 151 ~~~~~~~~",
	"+1 (N~~) N~~-~~~~", "(N~~) N~~-~~~~", "N~~-N~~-~~~~", "N~~.N~~.~~~~", "+1 N~~ N~~ ~~~~", "+1-N~~-N~~-~~~~",
	"+44 20 ~~~~ ~~~~", "020 ~~~~ ~~~~", "+44 7700 ~~~~~~", "07700 ~~~~~~",
	"+33 6 ~~ ~~ ~~ ~~", "06 ~~ ~~ ~~ ~~", "06.~~.~~.~~.~~", "01 ~~ ~~ ~~ ~~",
	"+34 6~~ ~~~ ~~~", "6~~ ~~~ ~~~", "+34 91 ~~~ ~~ ~~",
	"+31 6 ~~~~~~~~", "06-~~~~~~~~", "020-~~~ ~~~~", "+31 20 ~~~ ~~~~",
	"+48 5~~ ~~~ ~~~", "5~~-~~~-~~~", "+48 22 ~~~ ~~ ~~",
	"+7 9~~ ~~~-~~-~~", "8 (9~~) ~~~-~~-~~",
	"+86 138 ~~~~ ~~~~", "+81 3-~~~~-~~~~", "03-~~~~-~~~~", "+30 21~ ~~~ ~~~~", "+90 5~~ ~~~ ~~ ~~",
	"+91 98~~~ ~~~~~", "+971 50 ~~~ ~~~~", "+39 3~~ ~~~ ~~~~",
	"+4915~~~~~~~~~", "06~~~~~~~~", "0049 30 ~~~~~~~", "00 44 20 ~~~~ ~~~~", "+44 (0) 20 ~~~~ ~~~~",
}

// card returns a card number of a common network, Luhn-valid or not, compact
// or grouped the network's way.
func (g gen) card(valid bool) string {
	type network struct {
		prefix string
		groups []int
	}
	n := []network{
		{"4", []int{4, 4, 4, 4}}, {"51", []int{4, 4, 4, 4}}, {"55", []int{4, 4, 4, 4}}, {"2221", []int{4, 4, 4, 4}},
		{"34", []int{4, 6, 5}}, {"37", []int{4, 6, 5}}, {"6011", []int{4, 4, 4, 4}}, {"35", []int{4, 4, 4, 4}},
		{"6759", []int{4, 4, 4, 4, 3}}, {"4", []int{4, 4, 5}},
	}[g.r.IntN(10)]
	length := 0
	for _, l := range n.groups {
		length += l
	}
	d := []byte(n.prefix)
	for len(d) < length-1 {
		d = append(d, byte('0'+g.r.IntN(10)))
	}
	check := luhnDigit(d)
	if !valid {
		check = (check + 1 + g.r.IntN(9)) % 10
	}
	d = append(d, byte('0'+check))
	sep := g.pick([]string{"", " ", " ", "-"})
	if sep == "" {
		return string(d)
	}
	var parts []string
	for _, l := range n.groups {
		parts = append(parts, string(d[:l]))
		d = d[l:]
	}
	return strings.Join(parts, sep)
}

// luhnDigit computes the check digit that makes d plus it pass Luhn; written
// apart from the package's check on purpose.
func luhnDigit(d []byte) int {
	sum := 0
	for k := range d {
		v := int(d[len(d)-1-k] - '0')
		if k%2 == 0 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return (10 - sum%10) % 10
}

// ibanFormats are BBAN shapes (A a letter, ~ a digit) of some registry
// countries.
var ibanFormats = []struct{ country, bban string }{
	{"DE", "~~~~~~~~~~~~~~~~~~"}, {"FR", "~~~~~~~~~~~~~~~~~~~~~~~"}, {"ES", "~~~~~~~~~~~~~~~~~~~~"},
	{"NL", "AAAA~~~~~~~~~~"}, {"GB", "AAAA~~~~~~~~~~~~~~"}, {"PL", "~~~~~~~~~~~~~~~~~~~~~~~~"},
	{"IT", "A~~~~~~~~~~~~~~~~~~~~~~"}, {"BE", "~~~~~~~~~~~~"}, {"AT", "~~~~~~~~~~~~~~~~"},
	{"CH", "~~~~~~~~~~~~~~~~~"}, {"NO", "~~~~~~~~~~~"}, {"TR", "~~~~~~~~~~~~~~~~~~~~~~"},
	{"SA", "~~~~~~~~~~~~~~~~~~~~"}, {"GR", "~~~~~~~~~~~~~~~~~~~~~~~"}, {"PT", "~~~~~~~~~~~~~~~~~~~~~"},
}

func (g gen) iban(valid bool) string {
	f := ibanFormats[g.r.IntN(len(ibanFormats))]
	var bban strings.Builder
	for _, c := range f.bban {
		if c == 'A' {
			bban.WriteByte(byte('A' + g.r.IntN(26)))
		} else {
			bban.WriteByte(byte('0' + g.r.IntN(10)))
		}
	}
	check := 98 - ibanRemainder(bban.String()+f.country+"00")
	if !valid {
		// Off by 1 to 50: never a multiple of 97, so never valid.
		if check += 1 + g.r.IntN(50); check > 98 {
			check -= 97
		}
	}
	iban := fmt.Sprintf("%s%02d%s", f.country, check, bban.String())
	if g.r.IntN(5) < 2 {
		return iban
	}
	var parts []string
	for len(iban) > 4 {
		parts = append(parts, iban[:4])
		iban = iban[4:]
	}
	return strings.Join(append(parts, iban), " ")
}

func ibanRemainder(s string) int {
	rem := 0
	for _, c := range s {
		if c >= 'A' {
			rem = (rem*100 + int(c-'A') + 10) % 97
		} else {
			rem = (rem*10 + int(c-'0')) % 97
		}
	}
	return rem
}

func (g gen) ip() (pre, val, post string) {
	switch g.r.IntN(6) {
	case 0:
		return "", fmt.Sprintf("2001:db8:%x:%x::%x", g.r.IntN(65536), g.r.IntN(65536), 1+g.r.IntN(65535)), ""
	case 1:
		return "[", fmt.Sprintf("2001:db8::%x", 1+g.r.IntN(65535)), "]:443"
	case 2:
		return "", fmt.Sprintf("fe80::%x:%x:%x:%x", g.r.IntN(65536), g.r.IntN(65536), g.r.IntN(65536), g.r.IntN(65536)), ""
	case 3:
		return "", fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(223), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254)), ":8080"
	default:
		return "", fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(223), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254)), ""
	}
}

// generateCorpus returns corpusSize generated records and then the
// hand-written ones.
func generateCorpus() []record {
	g := gen{rand.New(rand.NewPCG(corpusSeed, corpusSeed))}
	langs := make([]string, 0, len(templates))
	for l := range templates {
		langs = append(langs, l)
	}
	slices.Sort(langs)
	var out []record
	for n := range corpusSize {
		lang := langs[n%len(langs)]
		tpl := g.pick(templates[lang])
		rec := record{ID: fmt.Sprintf("gen-%04d", n), Lang: lang, Spans: []recordSpan{}}
		var b strings.Builder
		for {
			open := strings.IndexByte(tpl, '{')
			if open < 0 {
				break
			}
			end := open + strings.IndexByte(tpl[open:], '}')
			b.WriteString(tpl[:open])
			slot := tpl[open+1 : end]
			pre, val, post := g.slot(slot, lang)
			b.WriteString(pre)
			if kind, ok := kindsOfSlot[slot]; ok {
				rec.Spans = append(rec.Spans, recordSpan{b.Len(), b.Len() + len(val), kind})
			}
			b.WriteString(val)
			b.WriteString(post)
			tpl = tpl[end+1:]
		}
		b.WriteString(tpl)
		rec.Text = b.String()
		out = append(out, rec)
	}
	for n, h := range handwritten {
		rec := parseMarked(h.text)
		rec.ID, rec.Lang = fmt.Sprintf("hand-%03d", n), h.lang
		out = append(out, rec)
	}
	return out
}

// parseMarked turns "call {{phone|+1 555 0100}}" into text and spans.
func parseMarked(m string) record {
	rec := record{Spans: []recordSpan{}}
	var b strings.Builder
	for {
		open := strings.Index(m, "{{")
		if open < 0 {
			break
		}
		end := open + strings.Index(m[open:], "}}")
		b.WriteString(m[:open])
		kind, val, _ := strings.Cut(m[open+2:end], "|")
		rec.Spans = append(rec.Spans, recordSpan{b.Len(), b.Len() + len(val), kind})
		b.WriteString(val)
		m = m[end+2:]
	}
	b.WriteString(m)
	rec.Text = b.String()
	return rec
}
