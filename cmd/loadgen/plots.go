package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// chart is one generated image.
type chart struct {
	File string // path relative to the results file
	Alt  string
}

var goalStyle = draw.LineStyle{Color: color.RGBA{R: 200, A: 255}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(3)}}

// writePlots draws the run's figures into dir as ext ("svg" or "png")
// files and returns them with their paths relative to relTo.
func (r results) writePlots(dir, relTo, ext string) ([]chart, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plots dir: %w", err)
	}
	type drawing struct {
		name, alt string
		make      func() (*plot.Plot, error)
	}
	drawings := []drawing{
		{"throughput", "messages per second, raw JetStream beside the HTTP API", r.throughputPlot},
		{"latency", "WebSocket delivery latency percentiles at each offered rate", r.latencyPlot},
		{"memory", "parley's memory against idle WebSocket connections", r.memoryPlot},
		{"erase", "erasure time against history size", r.erasePlot},
	}
	var out []chart
	for _, d := range drawings {
		p, err := d.make()
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", d.name, err)
		}
		if p == nil {
			continue
		}
		path := filepath.Join(dir, d.name+"."+ext)
		if err := p.Save(16*vg.Centimeter, 9*vg.Centimeter, path); err != nil {
			return nil, fmt.Errorf("save %s: %w", path, err)
		}
		rel, err := filepath.Rel(relTo, path)
		if err != nil {
			rel = path
		}
		out = append(out, chart{File: filepath.ToSlash(rel), Alt: d.alt})
	}
	return out, nil
}

func (r results) throughputPlot() (*plot.Plot, error) {
	t := r.Throughput
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Durable messages per second (%d concurrent, %d B)", r.Config.Concurrency, r.Config.Payload)
	p.Y.Label.Text = "messages/s"
	for i, v := range []float64{t.RawPerSec, t.APIPerSec} {
		bar, err := plotter.NewBarChart(plotter.Values{v}, vg.Centimeter*2.5)
		if err != nil {
			return nil, err
		}
		bar.XMin, bar.Color, bar.LineStyle.Width = float64(i), plotutil.Color(2-2*i), 0
		p.Add(bar)
	}
	labels, err := plotter.NewLabels(plotter.XYLabels{
		XYs:    []plotter.XY{{X: 0, Y: t.RawPerSec}, {X: 1, Y: t.APIPerSec}},
		Labels: []string{thousandsf(t.RawPerSec) + "/s", fmt.Sprintf("%s/s (%.1f%% of raw)", thousandsf(t.APIPerSec), 100*t.Ratio)},
	})
	if err != nil {
		return nil, err
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].XAlign = draw.XCenter
	}
	labels.Offset.Y = vg.Points(3)
	p.Add(labels)
	goal := 0.3 * t.RawPerSec
	if err := addHLine(p, -0.5, 1.5, goal, fmt.Sprintf("goal: 30%% of raw (%s/s)", thousandsf(goal))); err != nil {
		return nil, err
	}
	p.NominalX("raw JetStream, sync publish", "Parley, POST /v1/…/messages")
	p.Y.Min = 0
	p.Y.Max = 1.3 * max(t.RawPerSec, t.APIPerSec)
	p.Legend.Top = true
	return p, nil
}

func (r results) latencyPlot() (*plot.Plot, error) {
	if len(r.Latency) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "WebSocket delivery latency, post to arrival"
	p.Y.Label.Text = "milliseconds (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	lo, hi := 10.0, 10.0
	for i, l := range r.Latency {
		pts := plotter.XYs{{X: 0, Y: ms(l.P50)}, {X: 1, Y: ms(l.P90)}, {X: 2, Y: ms(l.P99)}, {X: 3, Y: ms(l.Max)}}
		if l.Delivered == 0 {
			continue
		}
		for _, pt := range pts {
			lo, hi = min(lo, pt.Y), max(hi, pt.Y)
		}
		if err := addSeries(p, i, fmt.Sprintf("%s/s offered (%s/s achieved)", thousandsf(l.Rate), thousandsf(l.Achieved)), pts); err != nil {
			return nil, err
		}
	}
	if err := addHLine(p, 0, 3, 10, "goal at 1,000/s: p99 ≤ 10 ms"); err != nil {
		return nil, err
	}
	p.NominalX("p50", "p90", "p99", "max")
	// Room for the legend above the lines.
	p.X.Min, p.X.Max = -0.2, 3.2
	p.Y.Min, p.Y.Max = lo/1.5, hi*20
	p.Legend.Top, p.Legend.Left = true, true
	return p, nil
}

func (r results) memoryPlot() (*plot.Plot, error) {
	m := r.Idle
	if len(m.Points) < 2 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("parley's memory with idle WebSocket connections (%.1f KiB each)", m.PerConnRSS/1024)
	p.X.Label.Text = "idle connections (held by another process)"
	p.Y.Label.Text = "MiB"
	rss, goMem := make(plotter.XYs, len(m.Points)), make(plotter.XYs, len(m.Points))
	for i, pt := range m.Points {
		rss[i] = plotter.XY{X: float64(pt.Conns), Y: float64(pt.RSS) / (1 << 20)}
		goMem[i] = plotter.XY{X: float64(pt.Conns), Y: pt.GoBytes / (1 << 20)}
	}
	for i, s := range []struct {
		name string
		xys  plotter.XYs
	}{{"resident set size", rss}, {"Go heap and stacks in use", goMem}} {
		if err := addSeries(p, i, s.name, s.xys); err != nil {
			return nil, err
		}
	}
	last := m.Points[len(m.Points)-1]
	goal, err := plotter.NewLine(plotter.XYs{
		{X: 0, Y: rss[0].Y},
		{X: float64(last.Conns), Y: rss[0].Y + float64(last.Conns)*20/1024},
	})
	if err != nil {
		return nil, err
	}
	goal.LineStyle = goalStyle
	p.Add(goal)
	p.Legend.Add("goal: 20 KiB per connection", goal)
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true
	return p, nil
}

func (r results) erasePlot() (*plot.Plot, error) {
	if len(r.Erasures) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Erasure to completion against the visitor's history"
	p.X.Label.Text = "messages in the history (log scale)"
	p.Y.Label.Text = "milliseconds"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	seen, reported := make(plotter.XYs, len(r.Erasures)), make(plotter.XYs, len(r.Erasures))
	top := 50.0
	for i, e := range r.Erasures {
		seen[i] = plotter.XY{X: float64(e.History), Y: ms(e.Elapsed)}
		reported[i] = plotter.XY{X: float64(e.History), Y: ms(e.Reported)}
		top = max(top, seen[i].Y, reported[i].Y)
	}
	for i, s := range []struct {
		name string
		xys  plotter.XYs
	}{{"DELETE /v1/me until status completed is read", seen}, {"duration_ms of the erasure report", reported}} {
		if err := addSeries(p, i, s.name, s.xys); err != nil {
			return nil, err
		}
	}
	if err := addHLine(p, seen[0].X, seen[len(seen)-1].X, 50, "goal: ≤ 50 ms, flat"); err != nil {
		return nil, err
	}
	p.Y.Min, p.Y.Max = 0, top*1.3
	p.Legend.Top = true
	return p, nil
}

// addHLine draws a dashed goal line at y from x0 to x1.
// addSeries adds xys to p as the i-th series: a line with points in the
// i-th colour and shape, named in the legend.
func addSeries(p *plot.Plot, i int, name string, xys plotter.XYs) error {
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
	points.Shape = plotutil.Shape(i)
	p.Add(line, points)
	p.Legend.Add(name, line, points)
	return nil
}

func addHLine(p *plot.Plot, x0, x1, y float64, name string) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return err
	}
	l.LineStyle = goalStyle
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// ms is d in milliseconds, never quite zero so that it has a logarithm.
func ms(d time.Duration) float64 {
	return math.Max(float64(d)/float64(time.Millisecond), 0.001)
}
