// Command loadgen measures Parley from the outside: it starts `parley all`
// in its own process, drives visitors over HTTP and WebSocket, and measures
// raw JetStream on the same server in the same run, so every figure has its
// baseline beside it. It prints progress while it runs, a summary at the
// end, rewrites the results section of BENCHMARKS.md and draws the charts
// it links to.
//
// The phases, in order, on one parley process and one data dir:
//
//  1. memory: a child process (`loadgen hold-ws`, hidden) opens idle
//     WebSocket sessions in steps while parley's memory is sampled; first,
//     while parley is fresh, so that no garbage of other phases blurs it;
//  2. throughput: raw JetStream sync publishes, then HTTP posts, flat out;
//  3. latency: posts on a schedule at each rate, timed to their arrival on
//     the posting visitor's live stream;
//  4. erasure: visitors with histories of each size, erased and polled to
//     completion; the export of one history is timed on the way;
//  5. export memory: one visitor's history of tens of MiB exported by
//     concurrent requests while parley's resident memory is sampled;
//  6. analytics: parley restarted on the same data with a local ClickHouse
//     drains the facts of everything posted so far, then single posts are
//     timed until the metrics count them;
//  7. retained: on a parley and data dir of its own, restarted empty and
//     then with each size of retained history posted through the API,
//     start to ready, resident memory and a 500-message transcript's read;
//     then an agent's inbox of thousands of open conversations, listed a
//     page at a time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "hold-ws":
		err = holdWS(ctx, os.Args[2:], os.Stdin, os.Stdout)
	case len(os.Args) > 1 && os.Args[1] == "plot":
		err = replot(os.Args[2:])
	default:
		err = run(ctx, os.Args[1:])
	}
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
	Parley       string
	Duration     time.Duration
	Concurrency  int
	Payload      int
	Out          string
	Plots        string
	Quick        bool
	Rates        []float64
	RateVisitors int
	WarmUp       time.Duration // of each rate, before it is timed
	Settle       time.Duration // the longest wait for parley to go quiet before a timing
	IdleConns    int
	IdleSteps    int
	Histories    []int
	ExportAt     int
	ExportMiB    int // history of the export memory phase
	Exports      int // concurrent exports of it
	LagSamples   int
	Analytics    bool
	// Retained are the history sizes (ascending, 0 for none) the retained
	// phase restarts parley with; none skips the phase.
	Retained              []int
	RetainedConversations int
	// RetainedClosed closes the history's conversations before the
	// restarts: a history of closed conversations rather than open ones.
	RetainedClosed  bool
	TranscriptReads int
	Inbox           int // open conversations of the inbox listing (0: skip)
	// CPUProfile is where to write the load generator's own CPU profile
	// of the whole run ("" = none).
	CPUProfile string `json:"-"`
}

func run(ctx context.Context, args []string) error {
	cfg := config{
		Rates:        []float64{1000, 5000},
		RateVisitors: 1000,
		WarmUp:       time.Second,
		Settle:       15 * time.Second,
		IdleConns:    15000,
		IdleSteps:    5,
		Histories:    []int{10, 10_000, 100_000},
		ExportAt:     10_000,
		ExportMiB:    48,
		Exports:      4,
		LagSamples:   5,
		Retained:     []int{0, 300_000, 1_000_000},
		// The measurement: its messages over 1,000 conversations.
		RetainedConversations: 1000,
		TranscriptReads:       300,
		Inbox:                 10_000,
	}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&cfg.Parley, "parley", "bin/parley", "the parley binary to measure")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each measured throughput and latency phase")
	fs.IntVar(&cfg.Concurrency, "concurrency", 100, "concurrent conversations (and raw publishers)")
	fs.IntVar(&cfg.Payload, "payload", 512, "message size in bytes")
	fs.StringVar(&cfg.Out, "out", "BENCHMARKS.md", `file whose results section to rewrite ("" = none)`)
	fs.StringVar(&cfg.Plots, "plots", "docs/bench", `directory for the charts, relative to --out's ("" = none)`)
	fs.Func("rates", "offered message rates of the latency phase, comma-separated (default 1000,5000)", func(s string) error {
		r, err := parseList(s, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
		cfg.Rates = r
		return err
	})
	fs.IntVar(&cfg.IdleConns, "idle-conns", cfg.IdleConns, "idle WebSocket connections of the memory phase (0: skip)")
	fs.Func("histories", "history sizes of the erasure phase, comma-separated (default 10,10000,100000)", func(s string) error {
		h, err := parseList(s, strconv.Atoi)
		cfg.Histories = h
		return err
	})
	fs.IntVar(&cfg.ExportMiB, "export-history", cfg.ExportMiB, "MiB of history of the export memory phase (0: skip)")
	fs.IntVar(&cfg.Exports, "exports", cfg.Exports, "concurrent exports of the export memory phase")
	fs.Func("retained", `retained history sizes to restart parley with, ascending, comma-separated, 0 for an empty one (default 0,300000,1000000; "off" skips)`, func(s string) error {
		var err error
		cfg.Retained, err = parseSizes(s)
		return err
	})
	fs.IntVar(&cfg.RetainedConversations, "retained-conversations", cfg.RetainedConversations, "conversations (one visitor each) the retained history is spread over")
	fs.BoolVar(&cfg.RetainedClosed, "retained-closed", false, "close the retained history's conversations once the first size is posted (a closed history; a larger size then fails)")
	fs.IntVar(&cfg.Inbox, "inbox", cfg.Inbox, "open conversations of the inbox listing, after the retained phase (0: skip)")
	fs.BoolVar(&cfg.Analytics, "analytics", true, "restart with a local ClickHouse and measure the facts' flow")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.BoolVar(&cfg.Quick, "quick", os.Getenv("BENCH_QUICK") == "1", "short phases (also BENCH_QUICK=1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Quick {
		cfg.Duration = min(cfg.Duration, 2*time.Second)
		cfg.IdleConns, cfg.IdleSteps = min(cfg.IdleConns, 2000), 4
		cfg.RateVisitors, cfg.WarmUp, cfg.Settle = 500, 500*time.Millisecond, 5*time.Second
		cfg.Histories, cfg.ExportAt, cfg.LagSamples = []int{10, 1000, 10_000}, 10_000, 3
		cfg.ExportMiB = min(cfg.ExportMiB, 16)
		// A fiftieth of each history: 6,000 and 20,000 messages for the
		// issue's 300,000 and 1,000,000.
		for i := range cfg.Retained {
			cfg.Retained[i] /= 50
		}
		cfg.RetainedConversations, cfg.TranscriptReads = 200, 100
		cfg.Inbox = min(cfg.Inbox, 1000)
	}
	if cfg.Concurrency < 1 || cfg.Payload < 1 || cfg.Duration <= 0 || cfg.IdleConns < 0 || cfg.ExportMiB < 0 || cfg.Exports < 1 || cfg.RetainedConversations < 1 {
		return errors.New("--concurrency, --payload, --duration, --exports and --retained-conversations must be positive, --idle-conns and --export-history not negative")
	}
	raiseFileLimit()
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	res := results{Config: cfg, Started: time.Now().UTC(), Commit: commit(), LoadAvg: loadAverage()}
	srv, err := startParley(ctx, cfg.Parley, startOptions{})
	if err != nil {
		return err
	}
	defer func() {
		srv.stop()
		srv.remove()
	}()

	if cfg.IdleConns > 0 {
		if res.Idle, err = measureIdle(ctx, srv, cfg.IdleConns, cfg.IdleSteps); err != nil {
			return fmt.Errorf("memory phase: %w", err)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * cfg.Concurrency}}
	convs, err := openConversations(ctx, client, srv.base, "demo", cfg.Concurrency)
	if err != nil {
		return err
	}
	if err := srv.settle(ctx, cfg.Settle); err != nil {
		return err
	}
	if res.Throughput, err = measureThroughput(ctx, srv, cfg, convs); err != nil {
		return fmt.Errorf("throughput phase: %w", err)
	}
	if len(cfg.Rates) > 0 {
		if res.Latency, err = measureLatency(ctx, srv, cfg, cfg.RateVisitors, cfg.Rates); err != nil {
			return fmt.Errorf("latency phase: %w", err)
		}
	}
	if len(cfg.Histories) > 0 {
		if res.Erasures, res.Export, err = measureErasure(ctx, srv, cfg, cfg.Histories, cfg.ExportAt); err != nil {
			return fmt.Errorf("erasure phase: %w", err)
		}
	}
	if cfg.ExportMiB > 0 {
		m, err := measureExportMemory(ctx, srv, cfg, int64(cfg.ExportMiB)<<20, cfg.Exports)
		if err != nil {
			return fmt.Errorf("export memory phase: %w", err)
		}
		res.ExportMemory = &m
	}
	if res.RSS, err = srv.rss(); err != nil {
		return err
	}
	if cfg.Analytics {
		restarted, a, err := measureAnalytics(ctx, srv, convs, cfg.LagSamples)
		if restarted != nil {
			srv = restarted
		}
		if err != nil {
			return fmt.Errorf("analytics phase: %w", err)
		}
		res.Analytics = a
	} else {
		res.Analytics.NotMeasured = "skipped (--analytics=false)"
	}
	if len(cfg.Retained) > 0 || cfg.Inbox > 0 {
		// On a parley of its own: the one measured so far is stopped, so
		// that the two do not share the machine.
		srv.stop()
		r, err := measureRetained(ctx, cfg.Parley, cfg)
		if err != nil {
			return fmt.Errorf("retained phase: %w", err)
		}
		res.Retained = &r
	}
	res.Elapsed = time.Since(res.Started)

	if cfg.Out != "" && cfg.Plots != "" {
		base := filepath.Dir(cfg.Out)
		dir := filepath.Join(base, cfg.Plots)
		if res.Charts, err = res.writePlots(dir, base, "svg"); err != nil {
			return err
		}
		if err := res.writeJSON(filepath.Join(dir, resultsFile)); err != nil {
			return err
		}
	}
	res.print(os.Stdout)
	if cfg.Out != "" {
		if err := res.writeMarkdown(cfg.Out); err != nil {
			return err
		}
		fmt.Printf("results written to %s\n", cfg.Out)
	}
	return nil
}

// replot is `loadgen plot`: it draws the charts again from a run's
// results.json, in another format or after a change to a chart.
func replot(args []string) error {
	fs := flag.NewFlagSet("loadgen plot", flag.ContinueOnError)
	from := fs.String("results", filepath.Join("docs/bench", resultsFile), "a run's results")
	dir := fs.String("dir", "docs/bench", "where to draw the charts")
	format := fs.String("format", "svg", "svg or png")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "svg" && *format != "png" {
		return errors.New("--format must be svg or png")
	}
	res, err := readResults(*from)
	if err != nil {
		return err
	}
	charts, err := res.writePlots(*dir, *dir, *format)
	for _, c := range charts {
		fmt.Println(filepath.Join(*dir, c.File))
	}
	return err
}

// parseSizes parses an ascending comma-separated list of counts, 0
// allowed; "off" is none.
func parseSizes(s string) ([]int, error) {
	if s == "off" {
		return nil, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if v < 0 || len(out) > 0 && v <= out[len(out)-1] {
			return nil, fmt.Errorf("%d: sizes must be ascending and not negative", v)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseList parses a comma-separated list of positive numbers.
func parseList[T int | float64](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		v, err := parse(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if v <= 0 {
			return nil, fmt.Errorf("%v is not positive", v)
		}
		out = append(out, v)
	}
	return out, nil
}
