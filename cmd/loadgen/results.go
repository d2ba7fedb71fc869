package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

type results struct {
	Config  config
	Started time.Time
	Elapsed time.Duration
	// Commit is the tree measured, read as the run began: the run rewrites
	// files of the tree.
	Commit     string
	LoadAvg    string // the machine's load average as the run began
	Throughput throughput
	Latency    []latency
	Idle       idleMemory
	Erasures   []erasure
	Export     *export
	// ExportMemory is nil when the phase was skipped.
	ExportMemory *exportMemory
	Analytics    analytics
	// Retained is nil when the retained phase was skipped.
	Retained *retained
	// RSS is parley's resident memory after every phase but the
	// analytics one, in bytes.
	RSS    int64
	Charts []chart `json:"-"`
}

// resultsFile is the name of a run's results, as JSON, beside its charts.
const resultsFile = "results.json"

func (r results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readResults(path string) (results, error) {
	var r results
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("read results: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// goals of issue 5 and of the privacy issue's erasure benchmark.
const (
	goalRatio     = 0.30
	goalP99       = 10 * time.Millisecond
	goalP99Rate   = 1000
	goalPerConn   = 20 << 10
	goalEraseFlat = 50 * time.Millisecond
	// goalExportGrowth bounds parley's growth while the exports run: pages
	// in flight and the garbage they leave, whatever the history's size.
	goalExportGrowth = 64 << 20
	unmeasuredNote   = "not measured"
)

// goals of issue 10: the WebSocket p99 at goalP99HighRate, facts into
// ClickHouse end to end, start and memory with a retained history of
// goalRetained messages, and a transcript's page and an inbox's.
const (
	goalP99High       = 50 * time.Millisecond
	goalP99HighRate   = 5000
	goalFactsPerSec   = 100_000
	goalRetained      = 1_000_000
	goalRetainedRSS   = 300 << 20
	goalRetainedReady = 3 * time.Second
	goalPageP99       = 20 * time.Millisecond
)

func (r results) print(w io.Writer) {
	t := r.Throughput
	fmt.Fprintf(w, "\nSummary (%d concurrent, %d-byte messages, %v per phase, %v in all)\n", r.Config.Concurrency, r.Config.Payload, r.Config.Duration, r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "  raw JetStream sync publish  %10.0f msg/s\n", t.RawPerSec)
	fmt.Fprintf(w, "  HTTP API, durable           %10.0f msg/s  (p50 %v, p99 %v, %d errors)\n", t.APIPerSec, t.APIP50.Round(time.Microsecond), t.APIP99.Round(time.Microsecond), t.APIErrors)
	fmt.Fprintf(w, "  ratio                       %10.1f%%  (goal ≥ 30%%)\n", 100*t.Ratio)
	for _, l := range r.Latency {
		fmt.Fprintf(w, "  WebSocket at %5.0f/s        p50 %v, p99 %v  (POST p50 %v, p99 %v; %.0f/s achieved, %d of %d delivered, %d shed, %d errors)\n",
			l.Rate, fmtDur(l.P50), fmtDur(l.P99), fmtDur(l.PostP50), fmtDur(l.PostP99), l.Achieved, l.Delivered, l.Posted, l.Shed, l.Errors)
	}
	fmt.Fprintf(w, "  loadgen's own CPU           %v a raw publish, %v an API post", t.RawOwnCPU.Round(100*time.Nanosecond), t.APIOwnCPU.Round(100*time.Nanosecond))
	for _, l := range r.Latency {
		fmt.Fprintf(w, "; at %.0f/s %v a post and its frame", l.Rate, l.OwnCPU.Round(100*time.Nanosecond))
	}
	fmt.Fprintln(w)
	if m := r.Idle; m.Target > 0 {
		fmt.Fprintf(w, "  idle WebSocket              %10.1f KiB resident each  (%d held, %d failed; Go heap+stacks %.1f KiB, %.2f goroutines each)\n",
			m.PerConnRSS/1024, m.Held, m.Failed, m.PerConnGo/1024, m.GoroutinesPerConn)
	}
	for _, e := range r.Erasures {
		fmt.Fprintf(w, "  erase, %7d messages      %10v to completion  (report %v)\n", e.History, e.Elapsed.Round(100*time.Microsecond), e.Reported)
	}
	if e := r.Export; e != nil && e.Failed != "" {
		fmt.Fprintf(w, "  export, %6d messages      failed after %v: %s\n", e.History, e.Elapsed.Round(100*time.Microsecond), e.Failed)
	} else if e != nil {
		fmt.Fprintf(w, "  export, %6d messages      %10v  (%.1f MiB)\n", e.History, e.Elapsed.Round(100*time.Microsecond), float64(e.Bytes)/(1<<20))
	}
	if m := r.ExportMemory; m != nil {
		fmt.Fprintf(w, "  %d exports at once          %s\n", m.Exports, m.summary())
	}
	if a := r.Analytics; a.NotMeasured != "" {
		fmt.Fprintf(w, "  analytics                   not measured: %s\n", a.NotMeasured)
	} else {
		fmt.Fprintf(w, "  facts into ClickHouse       %10.0f facts/s  (%d drained in %v)\n", a.FactsPerSec, a.Backlog, a.Drain.Round(time.Millisecond))
		fmt.Fprintf(w, "  post to queryable           p50 %v, max %v\n", a.LagP50.Round(time.Millisecond), a.LagMax.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "  parley resident memory      %10.1f MiB\n", float64(r.RSS)/(1<<20))
	if rt := r.Retained; rt != nil {
		for _, run := range rt.Runs {
			fmt.Fprintf(w, "  restart, %9d retained  ready in %v, %.1f MiB resident (peak %.1f MiB)", run.Messages, fmtDur(run.Ready), mib(run.RSS), mib(run.Peak))
			if run.Reads > 0 {
				fmt.Fprintf(w, "; transcript of %d: p50 %v, p99 %v", transcriptMessages, fmtDur(run.ReadP50), fmtDur(run.ReadP99))
			}
			fmt.Fprintln(w)
		}
		if in := rt.Inbox; in != nil {
			fmt.Fprintf(w, "  inbox of %6d open        p50 %v, p99 %v a page of %d (%d pages)\n", in.Conversations, fmtDur(in.P50), fmtDur(in.P99), in.PageSize, in.Pages)
		}
	}
}

const (
	startMarker = "<!-- results:start -->"
	endMarker   = "<!-- results:end -->"
)

// writeMarkdown replaces the results section of path (between the markers)
// with this run's figures, keeping the prose around it.
func (r results) writeMarkdown(path string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	section, err := replaceSection(old, r.markdown())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, section, 0o644)
}

// replaceSection returns doc with the text between its markers replaced
// by section.
func replaceSection(doc []byte, section string) ([]byte, error) {
	i, j := bytes.Index(doc, []byte(startMarker)), bytes.Index(doc, []byte(endMarker))
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %s … %s section", startMarker, endMarker)
	}
	var out bytes.Buffer
	out.Write(doc[:i])
	out.WriteString(startMarker + "\n")
	out.WriteString(section)
	out.Write(doc[j:])
	return out.Bytes(), nil
}

// markdown is the results section: the run, a table of every figure with
// its goal, and the charts.
func (r results) markdown() string {
	var b strings.Builder
	t := r.Throughput
	fmt.Fprintf(&b, "Run of %s on %s (commit %s), `%s`, %v in all; load average %s as it began.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), machine(), r.Commit, command(r.Config), r.Elapsed.Round(time.Second), r.LoadAvg)
	row := func(what, result, goal, met string) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", what, result, goal, met)
	}
	row("measurement", "result", "goal", "met")
	row("---", "---", "---", "---")
	row(fmt.Sprintf("raw JetStream sync publish, %d publishers, %d B", r.Config.Concurrency, r.Config.Payload),
		thousandsf(t.RawPerSec)+" msg/s", "baseline", "")
	row(fmt.Sprintf("HTTP API POST message, %d conversations, durable", r.Config.Concurrency),
		fmt.Sprintf("%s msg/s (p50 %v, p99 %v, %d errors)", thousandsf(t.APIPerSec), fmtDur(t.APIP50), fmtDur(t.APIP99), t.APIErrors), "", "")
	row("API ÷ raw", fmt.Sprintf("%.1f%%", 100*t.Ratio), "≥ 30%", met(t.Ratio >= goalRatio))
	for _, l := range r.Latency {
		goal, ok := "", ""
		switch l.Rate {
		case goalP99Rate:
			goal, ok = "p99 ≤ 10 ms", met(l.P99 <= goalP99 && l.Delivered > 0)
		case goalP99HighRate:
			goal, ok = "p99 ≤ 50 ms", met(l.P99 <= goalP99High && l.Delivered > 0)
		}
		keptUp := "kept up"
		if l.Achieved < 0.9*l.Rate || l.Shed > 0 {
			keptUp = "**did not keep up**"
		}
		row(fmt.Sprintf("WebSocket delivery, POST to arrival, %s msg/s offered over %s visitors' conversations and streams", thousandsf(l.Rate), thousands(l.Visitors)),
			fmt.Sprintf("p50 %v, p90 %v, p99 %v, max %v (the POST's answer: p50 %v, p99 %v); %s/s achieved (%s), %s of %s delivered, %s shed, %d errors",
				fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.Max), fmtDur(l.PostP50), fmtDur(l.PostP99), thousandsf(l.Achieved), keptUp, thousands(int(l.Delivered)), thousands(int(l.Posted)), thousands(int(l.Shed)), l.Errors),
			goal, ok)
	}
	if m := r.Idle; m.Held > 0 {
		row(fmt.Sprintf("memory per idle WebSocket: %s held by another process from %s", thousands(m.Held), plural(m.Sources, "source address", "source addresses")),
			fmt.Sprintf("%.1f KiB resident (Go heap and stacks: %.1f KiB, %.2f goroutines); %d failed to connect", m.PerConnRSS/1024, m.PerConnGo/1024, m.GoroutinesPerConn, m.Failed),
			"≤ 20 KiB", met(m.PerConnRSS <= goalPerConn && m.Held == m.Target))
	} else {
		row("memory per idle WebSocket", unmeasuredNote, "≤ 20 KiB", "")
	}
	var worst time.Duration
	for _, e := range r.Erasures {
		worst = max(worst, e.Elapsed)
	}
	for i, e := range r.Erasures {
		goal, ok := "", ""
		if i == 0 {
			goal, ok = "≤ 50 ms at every size, flat", met(worst <= goalEraseFlat)
		}
		row(fmt.Sprintf("erasure (`DELETE /v1/me`) to completion, history of %s messages", thousands(e.History)),
			fmt.Sprintf("%v (report's duration_ms: %v)%s", fmtDur(e.Elapsed), e.Reported, counts(e.Counts)), goal, ok)
	}
	if e := r.Export; e != nil {
		result := fmt.Sprintf("%v, %.1f MiB", fmtDur(e.Elapsed), float64(e.Bytes)/(1<<20))
		if e.Failed != "" {
			result = fmt.Sprintf("**fails** after %v: %s", fmtDur(e.Elapsed), e.Failed)
		}
		row(fmt.Sprintf("export (`GET /v1/me/export`), history of %s messages", thousands(e.History)), result, "", "")
	}
	if m := r.ExportMemory; m != nil {
		row(fmt.Sprintf("%d exports at once of a history of %s messages, %.0f MiB of text: parley's resident memory", m.Exports, thousands(m.Messages), mib(m.HistoryBytes)),
			m.summary(), "≤ 64 MiB growth, whatever the history", met(m.PeakRSS-m.RSSBefore <= goalExportGrowth))
	}
	if a := r.Analytics; a.NotMeasured != "" {
		row("facts into ClickHouse; post to queryable", unmeasuredNote+": "+a.NotMeasured, "", "")
	} else {
		row(fmt.Sprintf("facts into ClickHouse: backlog of %s facts drained after a restart", thousands(int(a.Backlog))),
			fmt.Sprintf("%s facts/s (%v)", thousandsf(a.FactsPerSec), a.Drain.Round(time.Millisecond)), "≥ 100k/s", met(a.FactsPerSec >= goalFactsPerSec))
		row("post to queryable in `GET /v1/metrics/messages`",
			fmt.Sprintf("p50 %v, max %v over %d messages", a.LagP50.Round(time.Millisecond), a.LagMax.Round(time.Millisecond), len(a.Lags)), "", "")
		row("restart on the run's data, ClickHouse included, until ready", a.Restart.Round(time.Millisecond).String(), "", "")
	}
	row("parley resident memory after the run (before the restart)", fmt.Sprintf("%.1f MiB", float64(r.RSS)/(1<<20)), "", "")
	if rt := r.Retained; rt != nil {
		rt.markdown(row)
	}
	if len(r.Charts) > 0 {
		b.WriteString("\n")
		for _, c := range r.Charts {
			fmt.Fprintf(&b, "![%s](%s)\n", c.Alt, c.File)
		}
	}
	return b.String()
}

// markdown writes the retained phase's rows with row.
func (rt retained) markdown(row func(what, result, goal, met string)) {
	for _, run := range rt.Runs {
		goal, ok := "", ""
		if run.Messages == goalRetained {
			goal, ok = "≤ 3 s, ≤ 300 MiB", met(run.Ready <= goalRetainedReady && run.RSS <= goalRetainedRSS)
		}
		what := "parley restarted on an empty data dir: start to ready, resident once settled (peak since the start)"
		if run.Messages > 0 {
			state := ""
			if rt.Closed {
				state = " closed"
			}
			what = fmt.Sprintf("parley restarted on %s retained messages of %d B over %s%s conversations: start to ready, resident once settled (peak since the start)",
				thousands(run.Messages), retainedPayload, thousands(rt.Conversations), state)
		}
		row(what, fmt.Sprintf("%v, %.1f MiB (%.1f MiB)", fmtDur(run.Ready), mib(run.RSS), mib(run.Peak)), goal, ok)
	}
	for _, run := range rt.Runs {
		if run.Reads == 0 {
			continue
		}
		row(fmt.Sprintf("transcript of %d messages read in one page by its visitor, %s retained", transcriptMessages, thousands(run.Messages)),
			fmt.Sprintf("p50 %v, p99 %v, max %v over %d reads", fmtDur(run.ReadP50), fmtDur(run.ReadP99), fmtDur(run.ReadMax), run.Reads),
			"p99 ≤ 20 ms", met(run.ReadP99 <= goalPageP99))
	}
	if rt.SeedPerSec > 0 {
		row("the retained history posted through the API", fmt.Sprintf("%s msg/s", thousandsf(rt.SeedPerSec)), "", "")
	}
	if in := rt.Inbox; in != nil {
		row(fmt.Sprintf("inbox of %s open conversations listed by an agent, %d a page, first to last", thousands(in.Conversations), in.PageSize),
			fmt.Sprintf("p50 %v, p99 %v, max %v over %d pages", fmtDur(in.P50), fmtDur(in.P99), fmtDur(in.Max), in.Pages),
			"p99 ≤ 20 ms a page", met(in.P99 <= goalPageP99))
	}
}

// summary is the figures of the export memory phase, in MiB.
func (m exportMemory) summary() string {
	peak := "peak (VmHWM)"
	if !m.HWMReset {
		peak = "peak (VmRSS sampled)"
	}
	return fmt.Sprintf("%.1f MiB before, %s %.1f MiB: +%.1f MiB; %s; %.1f MiB each export, all in %v",
		mib(m.RSSBefore), peak, mib(m.PeakRSS), mib(m.PeakRSS-m.RSSBefore), m.heapSummary(), mib(m.ExportBytes), fmtDur(m.Elapsed))
}

// heapSummary is the Go heap's part of the export memory phase's growth.
func (m exportMemory) heapSummary() string {
	b, p := m.HeapBefore, m.HeapPeak
	return fmt.Sprintf("Go heap resident %.1f → %.1f MiB most (+%.1f), in use %.1f → %.1f MiB most, goal %.1f → %.1f MiB most, %d collections",
		mib(b.Resident), mib(p.Resident), mib(p.Resident-b.Resident), mib(b.InUse), mib(p.InUse), mib(b.Goal), mib(p.Goal), p.GCs-b.GCs)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// fmtDur rounds d to what its size makes worth reading.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

// thousandsf rounds f and writes it with thousands separators.
func thousandsf(f float64) string { return thousands(int(math.Round(f))) }

// thousands writes n with thousands separators: 15000 → "15,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// plural is n and the noun of the right number: "1 source address".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return thousands(n) + " " + many
}

// counts lists an erasure report's counts, in a stable order.
func counts(c map[string]int64) string {
	if len(c) == 0 {
		return ""
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	return "; " + strings.Join(parts, ", ")
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d × %s%s, %s/%s, %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// loadAverage is the 1, 5 and 15 minute load averages of the machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func commit() string {
	// -dirty says when the tree measured was not the commit.
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func command(c config) string {
	if c.Quick {
		return "BENCH_QUICK=1 make bench"
	}
	return "make bench"
}
