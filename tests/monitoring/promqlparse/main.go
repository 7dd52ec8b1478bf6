// promqlparse parses PromQL with the parser of Prometheus 3 (the module the collector build
// already pins), which accepts the UTF-8 syntax SigNoz uses for OpenTelemetry names:
// {"http_request_duration_seconds.bucket", "service.name"="trader-api"}. Debian's
// Prometheus 2.42 rejects that syntax, so SigNoz expressions are checked here.
//
// stdin:  a JSON array of expressions.
// stdout: a JSON array, one object per expression, in order:
//
//	{"error": "..."}                        when it does not parse, or
//	{"selectors": [{"text": "...", "name": "...", "matchers": [{"name","type","value"}]}],
//	 "labels": ["service.name", ...]}
//
// "selectors" lists every vector selector (also those under a range or subquery), so a test
// can check that each one matches stored series. "labels" are the label names every series of
// the result carries, as far as the expression alone determines them (the `by` of an
// aggregation, through functions and binary operators); absent when it does not (a bare
// selector keeps whatever labels the stored series have). Alert templates may only use those.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type matcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type selector struct {
	Text     string    `json:"text"`
	Name     string    `json:"name"`
	Matchers []matcher `json:"matchers"`
}

type result struct {
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors,omitempty"`
	Labels    *[]string  `json:"labels,omitempty"`
}

// outputLabels: the label names of every result series, and whether the expression determines
// them. Conservative: where the labels depend on the stored series, known is false.
func outputLabels(e parser.Expr) (names []string, known bool) {
	switch n := e.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral:
		return []string{}, true
	case *parser.ParenExpr:
		return outputLabels(n.Expr)
	case *parser.UnaryExpr:
		return outputLabels(n.Expr)
	case *parser.SubqueryExpr:
		return outputLabels(n.Expr)
	case *parser.StepInvariantExpr:
		return outputLabels(n.Expr)
	case *parser.AggregateExpr:
		switch {
		case n.Without:
			return nil, false
		case n.Op == parser.TOPK || n.Op == parser.BOTTOMK || n.Op == parser.LIMITK || n.Op == parser.LIMIT_RATIO:
			return outputLabels(n.Expr) // whole input series
		case n.Op == parser.COUNT_VALUES:
			return nil, false
		}
		return sorted(n.Grouping), true
	case *parser.Call:
		switch n.Func.Name {
		case "vector", "time", "scalar", "pi":
			return []string{}, true
		case "histogram_quantile":
			inner, ok := outputLabels(n.Args[1])
			return without(inner, "le"), ok
		case "label_replace", "label_join", "absent", "absent_over_time", "sort_by_label", "sort_by_label_desc":
			return nil, false
		}
		for _, arg := range n.Args {
			if t := arg.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
				return outputLabels(arg)
			}
		}
		return []string{}, true
	case *parser.BinaryExpr:
		lhsScalar := n.LHS.Type() == parser.ValueTypeScalar
		rhsScalar := n.RHS.Type() == parser.ValueTypeScalar
		switch {
		case lhsScalar && rhsScalar:
			return []string{}, true
		case rhsScalar:
			return outputLabels(n.LHS)
		case lhsScalar:
			return outputLabels(n.RHS)
		}
		lhs, lok := outputLabels(n.LHS)
		rhs, rok := outputLabels(n.RHS)
		switch {
		case n.Op == parser.LOR:
			// each series comes from one side: only labels both sides carry are certain
			if !lok || !rok {
				return nil, false
			}
			var both []string
			for _, l := range lhs {
				if slices.Contains(rhs, l) {
					both = append(both, l)
				}
			}
			return sorted(both), true
		case n.Op == parser.LAND || n.Op == parser.LUNLESS:
			return lhs, lok
		case n.VectorMatching != nil && n.VectorMatching.Card == parser.CardOneToMany:
			if !rok {
				return nil, false
			}
			return sorted(append(slices.Clone(rhs), n.VectorMatching.Include...)), true
		case n.VectorMatching != nil && n.VectorMatching.Card == parser.CardManyToOne:
			if !lok {
				return nil, false
			}
			return sorted(append(slices.Clone(lhs), n.VectorMatching.Include...)), true
		}
		return lhs, lok // one-to-one: the left-hand side's labels
	}
	return nil, false // selectors: the stored series' labels
}

func without(names []string, drop string) []string {
	out := []string{}
	for _, n := range names {
		if n != drop {
			out = append(out, n)
		}
	}
	return out
}

func sorted(names []string) []string {
	out := slices.Clone(names)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promqlparse: stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		expr, err := parser.ParseExpr(e)
		if err != nil {
			out = append(out, result{Error: err.Error()})
			continue
		}
		r := result{Selectors: []selector{}}
		for _, vs := range parser.ExtractSelectors(expr) {
			s := selector{Matchers: []matcher{}}
			for _, m := range vs {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					s.Name = m.Value
				}
				s.Matchers = append(s.Matchers, matcher{Name: m.Name, Type: m.Type.String(), Value: m.Value})
			}
			s.Text = (&parser.VectorSelector{LabelMatchers: vs}).String()
			r.Selectors = append(r.Selectors, s)
		}
		if names, known := outputLabels(expr); known {
			r.Labels = &names
		}
		out = append(out, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "promqlparse:", err)
		os.Exit(1)
	}
}
