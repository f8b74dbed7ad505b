package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the config loader as a YAML file: it may
// reject them, never panic. Run: go test -run '^$' -fuzz FuzzLoad ./config/
// (CI adds -fuzzminimizetime 1s: by default each new interesting input is
// minimized for up to a minute, which the progress line shows as 0 execs/s).
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "examples", "node.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("name: n1\npeers: [{name: n1, address: \"127.0.0.1:1\"}]\ninsecure: true\n"))
	f.Add([]byte("heartbeat_interval: -1s\nelection_timeout: 1e400h\n"))
	f.Add([]byte("peers: {a: b}\nlabels: [1, 2]\n&a [*a]\n"))
	f.Add([]byte("name: !!binary AAAA\ntls: {ca_file: 3}\n"))
	// Relative paths in the data resolve against dir, which exists and is
	// empty: the file checks run, and fail, as for a real file there.
	path := filepath.Join(f.TempDir(), "node.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := load(path, data, LoadOptions{})
		if err == nil {
			_ = n.ElectionConfig() // a config that loads must convert
		}
	})
}
