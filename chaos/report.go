package chaos

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Output files, in the run directory.
const (
	ResultFile   = "result.json"
	SummaryFile  = "summary.txt"
	TimelineFile = "timeline.svg"
)

// Verdict is PASS or FAIL.
func (r *Result) Verdict() string {
	if r.Pass {
		return "PASS"
	}
	return "FAIL"
}

// OneLine is the verdict and the headline figures.
func (r *Result) OneLine() string {
	s := fmt.Sprintf("%s %s (%d nodes): elections=%d leader_changes=%d stepdowns=%d leaderless=%v max_overlap=%v",
		r.Verdict(), r.Scenario, r.Nodes, r.Elections, r.LeaderChanges, r.StepDowns, r.Leaderless, r.MaxOverlap)
	if r.FailoverP50 != nil {
		s += fmt.Sprintf(" failover p50=%v max=%v", r.FailoverP50, r.FailoverMax)
	}
	for _, c := range r.Changes {
		s += fmt.Sprintf(" [%s: %v, leaderless %v]", c.Desc, c.Took, c.Leaderless)
	}
	if r.FailBackAfter != nil {
		s += fmt.Sprintf(" fail_back=%v", r.FailBackAfter)
	}
	lines, cpu := 0, 0.0
	for _, n := range r.NodeStats {
		lines, cpu = max(lines, n.LogLines), max(cpu, n.CPUPercent)
	}
	return s + fmt.Sprintf(" max_log_lines=%d max_cpu=%.1f%%", lines, cpu)
}

// Summary is the human report of a run.
func (r *Result) Summary() string {
	var b strings.Builder
	mode := ""
	if r.SyncSend {
		mode = ", unsafe synchronous sends"
	}
	fmt.Fprintf(&b, "== %s: %s\n", r.Scenario, r.Verdict())
	if r.Description != "" {
		fmt.Fprintf(&b, "   %s\n", r.Description)
	}
	from := fmt.Sprintf("leader %s (term %d)", r.InitialLeader, r.InitialTerm)
	if r.InitialLeader == "" {
		from = "no leader"
	}
	fmt.Fprintf(&b, "   %d nodes, heartbeat %v, election timeout %v%s, observed %v from %s\n",
		r.Nodes, r.Heartbeat, r.ElectionTimeout, mode, r.Observed, from)
	for _, c := range r.Config {
		fmt.Fprintf(&b, "   config %s\n", c)
	}
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "   fault %d at %+.1fs for %.1fs: %s\n", f.Index,
			time.Duration(f.Start-r.Start).Seconds(), time.Duration(f.End-f.Start).Seconds(), f.Desc)
	}
	fmt.Fprintf(&b, "   elections %d, term changes %d, leader changes %d, step-downs %d, leaderless %v, max lease overlap %v\n",
		r.Elections, r.TermChanges, r.LeaderChanges, r.StepDowns, r.Leaderless, r.MaxOverlap)
	for _, f := range r.Failovers {
		nl, le := "no new leader", "held no lease"
		if f.NewLeaderAfter != nil {
			nl = fmt.Sprintf("%s led after %v", f.NewLeader, f.NewLeaderAfter)
		}
		if f.OldLeaseEndedAfter != nil {
			le = fmt.Sprintf("its lease ended after %v", f.OldLeaseEndedAfter)
		}
		fmt.Fprintf(&b, "   failover after fault %d on %s: %s, %s\n", f.Fault, f.OldLeader, nl, le)
	}
	for _, c := range r.Changes {
		took := "never applied on every member"
		if c.Applied != 0 {
			took = fmt.Sprintf("applied on every member after %v", c.Took)
		}
		fmt.Fprintf(&b, "   change %s at %+.1fs: %v -> %v, %s, leaderless %v during it", c.Desc,
			time.Duration(c.Requested-r.Start).Seconds(), c.Before, c.After, took, c.Leaderless)
		if c.HandedOverTo != "" {
			fmt.Fprintf(&b, " (%s led: it handed leadership to %s first)", c.Node, c.HandedOverTo)
		}
		if c.RequestError != "" {
			fmt.Fprintf(&b, " (the request failed: %s)", c.RequestError)
		}
		if len(c.RemovedExited) > 0 {
			fmt.Fprintf(&b, "; %v stopped by themselves, removed", c.RemovedExited)
		}
		b.WriteString("\n")
	}
	if r.FailBackAfter != nil {
		fmt.Fprintf(&b, "   leadership returned %v after the last fault ended\n", r.FailBackAfter)
	}
	if r.FailoverP50 != nil {
		fmt.Fprintf(&b, "   failover p50 %v, max %v over %d\n", r.FailoverP50, r.FailoverMax, len(r.Failovers))
	}
	b.WriteString("   node  cpu%   rss-max  rss-growth  max-queue  drops  campaigns  log-lines  log-kB\n")
	for _, n := range r.NodeStats {
		g := "-"
		if n.RSSGrowthMB != nil {
			g = fmt.Sprintf("%+.1fMB", *n.RSSGrowthMB)
		}
		fmt.Fprintf(&b, "   %-4s %5.2f  %6.1fMB  %10s  %9d  %5d  %9d  %9d  %6.1f\n", n.Name, n.CPUPercent, n.RSSMaxMB, g, n.MaxQueueDepth, n.Drops, n.Campaigns, n.LogLines, float64(n.LogBytes)/1000)
	}
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "   %s %s: want %s, got %s\n", mark, c.Name, c.Want, c.Got)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "   FAIL checker: %s\n", v)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "   FAIL harness: %s\n", e)
	}
	if r.Dir != "" {
		fmt.Fprintf(&b, "   files: %s (%s, %s, %s, event logs)\n", r.Dir, ResultFile, SummaryFile, TimelineFile)
	}
	return b.String()
}

// WriteFiles writes result.json, summary.txt and timeline.svg into dir.
func (r *Result) WriteFiles(dir string) error {
	return writeOutputs(dir, r, ResultFile, SummaryFile, r.Summary(), TimelineFile, r.SVG())
}

// writeOutputs writes a run's three files into dir: v as indented JSON, a
// text summary and an SVG picture.
func writeOutputs(dir string, v any, jsonFile, textFile, text, svgFile, svg string) error {
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, jsonFile), append(j, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, textFile), []byte(text), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, svgFile), []byte(svg), 0o644)
}

// SVG draws the run: one lane per node, leadership as a bar and the lease
// as a thinner bar inside it, campaigns and crashes as ticks, fault windows
// shaded across the lanes they touch. Time runs from the first event to the
// end of observation; the observed part starts at the dashed line.
func (r *Result) SVG() string {
	const (
		left, right, top = 70.0, 20.0, 50.0
		lane, width      = 40.0, 1000.0
	)
	var names []string
	for _, n := range r.NodeStats {
		names = append(names, n.Name)
	}
	from := r.Start
	for _, e := range r.Events {
		from = min(from, e.Mono)
	}
	span := float64(max(r.End-from, 1))
	x := func(mono int64) float64 { return left + (width-left-right)*float64(mono-from)/span }
	y := func(node string) float64 {
		for i, n := range names {
			if n == node {
				return top + float64(i)*lane
			}
		}
		return top
	}
	height := top + float64(len(names))*lane + 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(r.OneLine()))
	// Fault windows, shaded over the lanes of the nodes they named.
	for _, f := range r.Faults {
		touched := map[string]bool{}
		for _, n := range f.Roles {
			touched[n] = true
		}
		x0, x1 := x(f.Start), max(x(f.End), x(f.Start)+2)
		for _, n := range names {
			op := "0.12"
			if touched[n] {
				op = "0.35"
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#e4572e" fill-opacity="%s"><title>%s</title></rect>`+"\n",
				x0, y(n)-4, x1-x0, lane-4, op, html.EscapeString(fmt.Sprintf("fault %d: %s", f.Index, f.Desc)))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#a33">fault %d: %s</text>`+"\n", x0, top-10-float64(f.Index%2)*12, f.Index, html.EscapeString(f.Kind))
	}
	for _, n := range names {
		fmt.Fprintf(&b, `<text x="10" y="%.1f">%s</text>`+"\n", y(n)+lane/2, n)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ccc"/>`+"\n", left, width-right, y(n)+lane/2, y(n)+lane/2)
	}
	colors := []string{"#2e86ab", "#3bb273", "#7768ae", "#f18f01", "#c73e1d", "#5c4d7d"}
	for _, iv := range r.Timeline {
		col := colors[int(iv.Term)%len(colors)]
		x0, x1 := x(iv.Start), max(x(iv.End), x(iv.Start)+1)
		if iv.Lease {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="8" fill="black" fill-opacity="0.7"><title>%s</title></rect>`+"\n",
				x0, y(iv.Node)+lane/2-4, x1-x0, html.EscapeString(fmt.Sprintf("%s lease, token %d, %v", iv.Node, iv.Term, time.Duration(iv.End-iv.Start).Round(time.Millisecond))))
		} else {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.8"><title>%s</title></rect>`+"\n",
				x0, y(iv.Node)+4, x1-x0, lane-16, col, html.EscapeString(fmt.Sprintf("%s leads term %d, %v", iv.Node, iv.Term, time.Duration(iv.End-iv.Start).Round(time.Millisecond))))
			if x1-x0 > 40 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="white" font-size="10">term %d</text>`+"\n", x0+3, y(iv.Node)+14, iv.Term)
			}
		}
	}
	for _, e := range r.Events {
		mark := ""
		switch {
		case e.Kind == "crash":
			mark = "#000"
		case e.Kind == "state" && (e.Role == "candidate" || e.Role == "pre-candidate"):
			mark = "#f18f01"
		case e.Kind == "start":
			mark = "#3bb273"
		}
		if mark != "" {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"><title>%s</title></line>`+"\n",
				x(e.Mono), x(e.Mono), y(e.Node), y(e.Node)+lane-8, mark, html.EscapeString(fmt.Sprintf("%s %s %s term %d", e.Node, e.Kind, e.Role, e.Term)))
		}
	}
	// Observation start and a time axis in seconds from it.
	axis := top + float64(len(names))*lane
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555" stroke-dasharray="4 3"/>`+"\n", x(r.Start), x(r.Start), top-6, axis)
	total := time.Duration(r.End - r.Start).Seconds()
	step := niceStep(total)
	for s := 0.0; s <= total+1e-9; s += step {
		px := x(r.Start + int64(s*1e9))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555"/><text x="%.1f" y="%.1f" text-anchor="middle">%gs</text>`+"\n", px, px, axis, axis+5, px, axis+18, s)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#555">colour bar: leader (term); black bar: lease; orange tick: campaign; green tick: start; black tick: kill -9; red shade: fault (darker on the nodes it names)</text>`+"\n", left, axis+40)
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep picks an axis step giving about ten ticks.
func niceStep(total float64) float64 {
	for _, s := range []float64{0.5, 1, 2, 5, 10, 15, 30, 60} {
		if total/s <= 12 {
			return s
		}
	}
	return 120
}
