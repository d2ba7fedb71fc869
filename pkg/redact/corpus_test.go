package redact_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/redact"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus.jsonl from the generator")

var corpusFile = filepath.Join("testdata", "corpus.jsonl")

func encodeCorpus(t testing.TB, recs []record) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			t.Fatalf("encode %s: %v", r.ID, err)
		}
	}
	return b.Bytes()
}

func loadCorpus(t testing.TB) []record {
	t.Helper()
	f, err := os.Open(corpusFile)
	if err != nil {
		t.Fatalf("open corpus: %v", err)
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("corpus line %d: %v", len(recs)+1, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	return recs
}

// TestCorpusIsGenerated keeps testdata/corpus.jsonl what the generator makes
// (-update rewrites it), so the corpus grows by code, not by hand edits.
func TestCorpusIsGenerated(t *testing.T) {
	want := encodeCorpus(t, generateCorpus())
	if *update {
		if err := os.WriteFile(corpusFile, want, 0o644); err != nil {
			t.Fatalf("write corpus: %v", err)
		}
	}
	got, err := os.ReadFile(corpusFile)
	if err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generator's output: run go test -run TestCorpusIsGenerated -update", corpusFile)
	}
}

type tally struct{ tp, fp, fn int }

func (c tally) precision() float64 { return ratio(c.tp, c.tp+c.fp) }
func (c tally) recall() float64    { return ratio(c.tp, c.tp+c.fn) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// measure compares Find's spans with the labels, a span counting only when
// its start, end and kind are exactly the label's.
func measure(recs []record) (map[string]*tally, []string) {
	counts := map[string]*tally{}
	for _, k := range redact.Kinds() {
		counts[k.String()] = &tally{}
	}
	var misses []string
	for _, r := range recs {
		want := map[recordSpan]bool{}
		for _, s := range r.Spans {
			want[s] = true
		}
		got := map[recordSpan]bool{}
		for _, s := range redact.Find(r.Text) {
			got[recordSpan{s.Start, s.End, s.Kind.String()}] = true
		}
		for s := range got {
			if want[s] {
				counts[s.Type].tp++
			} else {
				counts[s.Type].fp++
				misses = append(misses, fmt.Sprintf("%s: false %s %q in %q", r.ID, s.Type, r.Text[s.Start:s.End], r.Text))
			}
		}
		for s := range want {
			if !got[s] {
				counts[s.Type].fn++
				misses = append(misses, fmt.Sprintf("%s: missed %s %q in %q", r.ID, s.Type, r.Text[s.Start:s.End], r.Text))
			}
		}
	}
	return counts, misses
}

// TestAccuracy measures precision and recall per kind over the labelled
// corpus and holds them to the goals; -v prints the table BENCHMARKS.md
// quotes.
func TestAccuracy(t *testing.T) {
	recs := loadCorpus(t)
	if len(recs) < 1000 {
		t.Fatalf("corpus holds %d messages, want at least 1000", len(recs))
	}
	langs := map[string]bool{}
	for _, r := range recs {
		langs[r.Lang] = true
	}
	counts, misses := measure(recs)
	for _, m := range misses {
		t.Log(m)
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%d messages, %d languages\n\n| type | labelled | found | precision | recall |\n|---|---:|---:|---:|---:|\n", len(recs), len(langs))
	for _, k := range redact.Kinds() {
		c := counts[k.String()]
		fmt.Fprintf(&table, "| %s | %d | %d | %.3f | %.3f |\n", k, c.tp+c.fn, c.tp+c.fp, c.precision(), c.recall())
	}
	t.Log("\n" + table.String())
	goals := []struct {
		kind              redact.Kind
		precision, recall float64
	}{
		{redact.Email, 0.99, 0.99},
		{redact.Card, 0.99, 0.99},
		{redact.IBAN, 0.99, 0.99},
		{redact.IP, 0.99, 0.99},
		{redact.Phone, 0.95, 0.95},
	}
	for _, g := range goals {
		c := counts[g.kind.String()]
		if c.tp+c.fn < 100 {
			t.Errorf("%s: %d labelled, want at least 100 to measure", g.kind, c.tp+c.fn)
		}
		if c.recall() < g.recall {
			t.Errorf("%s recall = %.3f, want ≥ %.2f", g.kind, c.recall(), g.recall)
		}
		if c.precision() < g.precision {
			t.Errorf("%s precision = %.3f, want ≥ %.2f", g.kind, c.precision(), g.precision)
		}
	}
}

// TestHandwritten holds every hand-written tricky case exactly: a regression
// there is a bug even when the corpus-wide figures still meet the goals.
func TestHandwritten(t *testing.T) {
	for _, h := range handwritten {
		rec := parseMarked(h.text)
		t.Run(h.lang, func(t *testing.T) {
			var got []recordSpan
			for _, s := range redact.Find(rec.Text) {
				got = append(got, recordSpan{s.Start, s.End, s.Kind.String()})
			}
			if diff := cmp.Diff(rec.Spans, got, cmpEmpty); diff != "" {
				t.Errorf("Find(%q) (-want +got):\n%s", rec.Text, diff)
			}
		})
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []recordSpan) bool { return cmp.Equal(a, b) || len(a) == 0 && len(b) == 0 })
