package config

import (
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// lineIndex finds the YAML line of a key path in a parsed file.
type lineIndex struct {
	root *yaml.Node // the document's top-level node, nil without a file
}

// segment is one step of a key path: a map key or a sequence index.
type segment struct {
	key   string
	index int // -1 for a map key
}

// splitPath splits "pipelines.x.steps[1].filter" into its segments.
func splitPath(path string) []segment {
	var segs []segment
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return append(segs, segment{key: path, index: -1})
			}
			if n, err := strconv.Atoi(path[1:end]); err == nil {
				segs = append(segs, segment{index: n})
			} else {
				segs = append(segs, segment{key: path[1:end], index: -1})
			}
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			segs = append(segs, segment{key: path[:end], index: -1})
			path = path[end:]
		}
	}
	return segs
}

// line returns the line of path: the line of its key (or sequence item).
// When the path is not in the file, exact is false and the line is that of
// the deepest ancestor found (0 when none).
func (ix lineIndex) line(path string) (line int, exact bool) {
	node := ix.root
	if node == nil {
		return 0, false
	}
	line = 0
	for _, seg := range splitPath(path) {
		node = deref(node)
		next, at := child(node, seg)
		if next == nil {
			return line, false
		}
		node, line = next, at
	}
	return line, true
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// child returns the value node for seg in n and the line to report for it.
func child(n *yaml.Node, seg segment) (*yaml.Node, int) {
	if n == nil {
		return nil, 0
	}
	switch n.Kind {
	case yaml.MappingNode:
		if seg.index >= 0 {
			seg.key = strconv.Itoa(seg.index)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == seg.key {
				return v, k.Line
			}
		}
		// Merge keys (<<: *base) bring in keys from elsewhere.
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Tag == "!!merge" {
				if v, line := child(deref(n.Content[i+1]), seg); v != nil {
					return v, line
				}
			}
		}
	case yaml.SequenceNode:
		if seg.index >= 0 && seg.index < len(n.Content) {
			v := n.Content[seg.index]
			return v, v.Line
		}
	}
	return nil, 0
}

// parseLines parses data into a node tree. An empty document gives a nil root.
func parseLines(data []byte) (lineIndex, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return lineIndex{}, err
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return lineIndex{root: doc.Content[0]}, nil
	}
	return lineIndex{}, nil
}

// Locate returns errs with File and Line filled in for the problems that
// name a key path in the YAML file at file (as the caller names it) but
// carry no line yet, such as the problems plugins report about their
// config blocks after Load; a path not in the file gets the line of its
// nearest parent that is. The result is sorted as Load sorts. When the file
// cannot be read or parsed, the problems are returned as they are, sorted.
func Locate(file string, errs Errors) Errors {
	out := slices.Clone(errs)
	if file != "" {
		if data, err := readFile(file); err == nil {
			if ix, err := parseLines(data); err == nil {
				for i := range out {
					e := &out[i]
					if e.File != "" || e.Line != 0 {
						continue
					}
					e.File = file
					if e.Path != "" {
						e.Line, _ = ix.line(e.Path)
					}
				}
			}
		}
	}
	return sortErrors(out)
}
