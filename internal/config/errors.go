package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	Line int    // 1-based line in the file; 0 when unknown
	Path string // field path, e.g. "clients[1].networks[0]"; "" for the whole file
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString("config: ")
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in one configuration, in file order. Load
// returns it (as error) when the file is not valid.
type Error struct {
	Source   string // the file name, or "built-in"
	Problems []Problem
}

// Error returns one line per problem, e.g.
//
//	config: line 42: clients[1].networks[0]: "10.0.0.300" is not an IP or CIDR
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems, looking lines up in the parsed document.
type problems struct {
	doc  *tree
	list []Problem
}

func (ps *problems) add(path, format string, args ...any) {
	ps.list = append(ps.list, Problem{Line: ps.doc.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) addLine(line int, path, msg string) {
	ps.list = append(ps.list, Problem{Line: line, Path: path, Msg: msg})
}

func (ps *problems) err(source string) error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool {
		// Problems with a line first, in file order; the rest keep their order.
		li, lj := list[i].Line, list[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	return &Error{Source: source, Problems: list}
}
