package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// tree is the parsed YAML document, kept to point problems at lines.
type tree struct {
	root *yaml.Node // the top-level mapping, or nil for an empty document
	// paths maps a line to the deepest field path that starts on it.
	paths map[int]string
}

func newTree(doc *yaml.Node) *tree {
	t := &tree{paths: map[int]string{}}
	if doc != nil && doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		t.root = doc.Content[0]
	}
	t.index(t.root, "")
	return t
}

func (t *tree) index(n *yaml.Node, path string) {
	if n == nil {
		return
	}
	if path != "" {
		if prev, ok := t.paths[n.Line]; !ok || len(path) > len(prev) {
			t.paths[n.Line] = path
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if prev, ok := t.paths[k.Line]; !ok || len(p) > len(prev) {
				t.paths[k.Line] = p
			}
			t.index(v, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			t.index(c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// line returns the line of the node at path, or of its deepest existing
// ancestor when the field is absent (0 when nothing matches).
func (t *tree) line(path string) int {
	n := t.root
	if n == nil {
		return 0
	}
	best := 0
	for _, tok := range splitPath(path) {
		n = resolve(n)
		var next *yaml.Node
		switch {
		case tok.index >= 0 && n.Kind == yaml.SequenceNode && tok.index < len(n.Content):
			next = n.Content[tok.index]
		case tok.index < 0 && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == tok.key {
					next = n.Content[i+1]
					best = n.Content[i].Line
					break
				}
			}
		}
		if next == nil {
			if n == t.root {
				return 0 // a missing top-level field has no line
			}
			if best == 0 {
				best = n.Line
			}
			return best
		}
		n = next
		best = n.Line
	}
	return best
}

type pathToken struct {
	key   string
	index int // -1 for a key
}

// splitPath splits "a.b[2].c" into a, b, [2], c.
func splitPath(path string) []pathToken {
	var toks []pathToken
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				toks = append(toks, pathToken{key: part, index: -1})
				break
			}
			if i > 0 {
				toks = append(toks, pathToken{key: part[:i], index: -1})
			}
			j := strings.IndexByte(part[i:], ']')
			if j < 0 {
				break
			}
			n, err := strconv.Atoi(part[i+1 : i+j])
			if err != nil {
				break
			}
			toks = append(toks, pathToken{index: n})
			part = part[i+j+1:]
		}
	}
	return toks
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// unknownFields walks the document alongside the Go type it decodes into
// and reports every mapping key that type does not have, with its path and
// line: a typo must never silently fall back to a default.
func (t *tree) unknownFields(typ reflect.Type, ps *problems) {
	walkUnknown(t.root, typ, "", ps, 0)
}

func walkUnknown(n *yaml.Node, typ reflect.Type, path string, ps *problems, depth int) {
	n = resolve(n)
	if n == nil || depth > 32 {
		return
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error; the decoder reports it
		}
		fields := yamlFields(typ)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // merge key: checked where it is defined
				continue
			}
			p := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				ps.addLine(k.Line, p, fmt.Sprintf("unknown field %q (valid fields: %s)", k.Value, strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			walkUnknown(v, ft, p, ps, depth+1)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			walkUnknown(c, typ.Elem(), fmt.Sprintf("%s[%d]", path, i), ps, depth+1)
		}
	}
}

func yamlFields(typ reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, typ.NumField())
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
