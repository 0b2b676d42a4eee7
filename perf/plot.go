package perf

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// nines maps a percentile (0–100) onto the x axis of a percentile plot: 1/(1-q), so that 90%,
// 99%, 99.9% … are evenly spaced on a log axis. The maximum is drawn one decade past 99.999%.
func nines(q float64) float64 {
	if q >= 100 {
		return 1e6
	}
	return 1 / (1 - q/100)
}

var ninesTicks = plot.ConstantTicks([]plot.Tick{
	{Value: 1, Label: "0%"}, {Value: 2, Label: "50%"}, {Value: 10, Label: "90%"}, {Value: 100, Label: "99%"},
	{Value: 1000, Label: "99.9%"}, {Value: 10000, Label: "99.99%"}, {Value: 100000, Label: "99.999%"}, {Value: 1e6, Label: "max"},
})

type series struct {
	name string
	r    *Result
}

func percentilePlot(title string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = ninesTicks
	p.Add(plotter.NewGrid())
	var vs []any
	for _, s := range ss {
		pts := plotter.XYs{}
		for _, pt := range s.r.Percentiles {
			pts = append(pts, plotter.XY{X: nines(pt.Q), Y: float64(pt.Us) / 1e3})
		}
		if len(pts) == 0 {
			continue
		}
		vs = append(vs, s.name, pts)
	}
	if err := plotutil.AddLines(p, vs...); err != nil {
		return nil, err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p, nil
}

func timelinePlot(title string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time in measured window (s)"
	p.Y.Label.Text = "latency (ms)"
	p.Add(plotter.NewGrid())
	line := func(r *Result, f func(TimelinePoint) int64) plotter.XYs {
		pts := plotter.XYs{}
		for _, t := range r.Timeline {
			if t.Count > 0 {
				pts = append(pts, plotter.XY{X: t.T, Y: float64(f(t)) / 1e3})
			}
		}
		return pts
	}
	var vs []any
	if len(ss) == 1 {
		r := ss[0].r
		vs = append(vs, "p50", line(r, func(t TimelinePoint) int64 { return t.P50Us }),
			"p99", line(r, func(t TimelinePoint) int64 { return t.P99Us }),
			"max", line(r, func(t TimelinePoint) int64 { return t.MaxUs }))
	} else {
		for _, s := range ss {
			vs = append(vs, s.name+" p99", line(s.r, func(t TimelinePoint) int64 { return t.P99Us }))
		}
	}
	for i := 1; i < len(vs); i += 2 {
		if len(vs[i].(plotter.XYs)) == 0 {
			vs[i] = plotter.XYs{{X: 0, Y: 0}}
		}
	}
	if err := plotutil.AddLines(p, vs...); err != nil {
		return nil, err
	}
	p.Legend.Top = true
	p.Y.Min = 0
	return p, nil
}

func savePanels(path string, plots ...*plot.Plot) error {
	const w, h = 14 * vg.Inch, 5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 8, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{plots}, t, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func describe(r *Result) string {
	s := r.Workload
	if r.Name != "" {
		s = r.Name
	}
	if r.Broker != "" {
		s += " on " + r.Broker
	}
	return fmt.Sprintf("%s: %s msg/s, p99 %s", s, fmtCount(r.MsgPerSec), fmtUs(r.Latency.P99Us))
}

// PlotResult writes a PNG with the latency percentile curve and latency over time of one run.
func PlotResult(path string, r *Result) error {
	ss := []series{{name: "latency", r: r}}
	pp, err := percentilePlot(describe(r), ss)
	if err != nil {
		return err
	}
	tp, err := timelinePlot("latency over time (per second)", ss)
	if err != nil {
		return err
	}
	return savePanels(path, pp, tp)
}

// PlotComparison writes a PNG comparing the same workload on several brokers: percentile curves
// and p99 over time, one line per broker.
func PlotComparison(path, workload string, rs []*Result) error {
	var ss []series
	for _, r := range rs {
		if r.Failed == "" && r.Latency.Count > 0 {
			ss = append(ss, series{name: r.Broker, r: r})
		}
	}
	if len(ss) == 0 {
		return fmt.Errorf("nothing to plot for %s", workload)
	}
	pp, err := percentilePlot(workload+": latency by percentile", ss)
	if err != nil {
		return err
	}
	tp, err := timelinePlot(workload+": p99 latency over time (per second)", ss)
	if err != nil {
		return err
	}
	return savePanels(path, pp, tp)
}
