package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ringtail/ringtail/perf"
)

// runPlot redraws plots from a JSON file written by --json (one run) or by bench (a comparison).
func runPlot(args []string) error {
	fs := flag.NewFlagSet("plot", flag.ExitOnError)
	out := fs.String("o", "", "output PNG (one run) or prefix (bench: PREFIX-<workload>.png); default: next to the JSON")
	fs.Parse(args)
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: ringtail-perf plot [-o OUT] FILE.json")
	}
	in := fs.Arg(0)
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(in, ".json")
	if *out != "" {
		base = strings.TrimSuffix(*out, ".png")
	}
	var cmp perf.Comparison
	if err := json.Unmarshal(raw, &cmp); err == nil && len(cmp.Results) > 0 {
		seen := map[string]bool{}
		for _, r := range cmp.Results {
			if seen[r.Name] {
				continue
			}
			seen[r.Name] = true
			var rs []*perf.Result
			for _, x := range cmp.Results {
				if x.Name == r.Name {
					rs = append(rs, x)
				}
			}
			p := base + "-" + r.Name + ".png"
			if err := perf.PlotComparison(p, r.Name, rs); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", r.Name, err)
				continue
			}
			fmt.Println("wrote", p)
		}
		return nil
	}
	var r perf.Result
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("%s: %v", in, err)
	}
	p := base + ".png"
	if err := perf.PlotResult(p, &r); err != nil {
		return err
	}
	fmt.Println("wrote", p)
	return nil
}
