package config

import (
	"os"

	"go.yaml.in/yaml/v3"
)

// Marshal writes the configuration as the YAML that Load reads back,
// leaving out every field at its zero value (Load gives those their
// defaults), so a written file holds only what its author set.
func (n *Node) Marshal() ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(n); err != nil {
		return nil, err
	}
	pruneZero(&doc)
	return yaml.Marshal(&doc)
}

// WriteFile writes the configuration to path (mode 0600: it names key
// files) as Marshal does.
func (n *Node) WriteFile(path string) error {
	b, err := n.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// pruneZero removes, in every mapping below y, the keys whose values are
// zero: an empty or zero scalar ("", 0, 0s, false, null), an empty
// sequence or mapping, or a mapping left empty by the pruning. The values
// of labels are the user's strings, kept as they are.
func pruneZero(y *yaml.Node) {
	if y.Kind != yaml.MappingNode {
		for _, c := range y.Content {
			pruneZero(c)
		}
		return
	}
	kept := y.Content[:0]
	for i := 0; i+1 < len(y.Content); i += 2 {
		k, v := y.Content[i], y.Content[i+1]
		if k.Value != "labels" {
			pruneZero(v)
		}
		if !isZero(v) {
			kept = append(kept, k, v)
		}
	}
	y.Content = kept
}

func isZero(y *yaml.Node) bool {
	switch y.Kind {
	case yaml.ScalarNode:
		switch y.Value {
		case "", "0", "0s", "false", "null":
			return true
		}
		return false
	case yaml.SequenceNode, yaml.MappingNode:
		return len(y.Content) == 0
	}
	return false
}
