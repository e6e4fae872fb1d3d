package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartupConflicts starts a second daemon beside a running one: on the same store, on the same embedded NATS
// port, on the same HTTP port. Each fails at once (not after waiting for a server that cannot start), saying what is
// taken and by whom. After a kill -9 of the first, a daemon starts on its store again: the lock died with it.
func TestStartupConflicts(t *testing.T) {
	eh, _ := binaries(t)
	store := t.TempDir()
	natsPort, httpPort := freePort(t), freePort(t)
	cfg := func(dir, store string, natsPort, httpPort int) string {
		return fmt.Sprintf(`
backend: jetstream
http: {listen: "127.0.0.1:%d", unix_socket: %q}
nats: {embedded: true, embedded_listen: "127.0.0.1:%d", store_dir: %q}
`, httpPort, filepath.Join(dir, "eh.sock"), natsPort, store)
	}
	dirA := shortDir(t)
	a := startSidecar(t, eh, dirA, cfg(dirA, store, natsPort, httpPort))
	pid := fmt.Sprintf("pid %d", a.cmd.Process.Pid)
	for _, tt := range []struct {
		name string
		yaml func(dir string) string
		want []string
	}{
		{"the same configuration", func(dir string) string { return cfg(dir, store, natsPort, httpPort) },
			[]string{store, pid}},
		{"the same store", func(dir string) string { return cfg(dir, store, freePort(t), freePort(t)) },
			[]string{"nats.store_dir", store, "is held by " + pid}},
		{"the same NATS port", func(dir string) string { return cfg(dir, t.TempDir(), natsPort, freePort(t)) },
			[]string{"nats.embedded_listen", fmt.Sprintf("127.0.0.1:%d is already in use by %s", natsPort, pid)}},
		{"the same HTTP port", func(dir string) string { return cfg(dir, t.TempDir(), freePort(t), httpPort) },
			[]string{"http.listen", fmt.Sprintf("127.0.0.1:%d is already in use by %s", httpPort, pid)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := shortDir(t)
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml(dir)), 0o600); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			p := start(t, "eventhook (second)", eh, "serve", "-config", path)
			if code := p.wait(t, 20*time.Second); code == 0 {
				t.Fatalf("the second daemon exited 0; want a failure. Output:\n%s", p.output())
			}
			if took := time.Since(began); took > 3*time.Second {
				t.Errorf("the second daemon took %v to fail; want at once", took)
			}
			for _, w := range tt.want {
				if !strings.Contains(p.output(), w) {
					t.Errorf("the output does not say %q:\n%s", w, p.output())
				}
			}
		})
	}
	a.kill()
	startSidecar(t, eh, dirA, cfg(dirA, store, natsPort, httpPort)) // waits for /readyz
}
