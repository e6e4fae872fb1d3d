package e2e

import (
	"os"
	"testing"
)

// TestMain runs the tests, then removes the binaries that binaries built, so that a run leaves nothing behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
