package memlimit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestContainerLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name  string
		files []string
		want  int64
	}{
		{"cgroup v2", []string{write("v2", "268435456\n")}, 256 << 20},
		{"v2 without a limit", []string{write("v2max", "max\n")}, 0},
		{"v1 without a limit", []string{write("v1", "9223372036854771712\n")}, 0},
		{"none", []string{filepath.Join(dir, "absent")}, 0},
		{"the first that exists", []string{filepath.Join(dir, "absent"), write("v1b", "104857600")}, 100 << 20},
	} {
		if got := containerLimit(tt.files); got != tt.want {
			t.Errorf("%s: containerLimit = %d; want %d", tt.name, got, tt.want)
		}
	}
}
