package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the config loader as a YAML file: it may
// reject them, never panic. Run: go test -run '^$' -fuzz FuzzLoad ./config/
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
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "node.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := Load(path, LoadOptions{})
		if err == nil {
			_ = n.ElectionConfig() // a config that loads must convert
		}
	})
}
