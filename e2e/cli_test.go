package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCommandLine runs the real binary as a newcomer would: help in every spelling prints usage on stdout and exits
// 0, so does the version, and a mistake exits 2 with one line on stderr that says what was wrong and how to get help.
func TestCommandLine(t *testing.T) {
	eh, _ := binaries(t)
	dir := t.TempDir() // no config.yaml here: nothing may start serving by accident
	tests := []struct {
		args       []string
		code       int
		stdout     string // a part of it; "" for nothing
		stderrLine string // a part of the one line on stderr; "" for nothing on stderr
	}{
		{[]string{"--help"}, 0, "Commands:", ""},
		{[]string{"-h"}, 0, "Commands:", ""},
		{[]string{"-help"}, 0, "Commands:", ""},
		{[]string{"help"}, 0, "Commands:", ""},
		{[]string{"help", "serve"}, 0, "Usage: eventhook [serve]", ""},
		{[]string{"help", "publish"}, 0, "Usage: eventhook publish", ""},
		{[]string{"help", "tail"}, 0, "Usage: eventhook tail", ""},
		{[]string{"help", "bench"}, 0, "Usage: eventhook bench", ""},
		{[]string{"help", "config"}, 0, "Usage: eventhook config check", ""},
		{[]string{"serve", "-h"}, 0, "-config", ""},
		{[]string{"publish", "-h"}, 0, "Examples:", ""},
		{[]string{"tail", "--help"}, 0, "Usage: eventhook tail", ""},
		{[]string{"config", "check", "-h"}, 0, "Usage: eventhook config check", ""},
		{[]string{"--version"}, 0, "eventhook ", ""},
		{[]string{"-version"}, 0, "nats-server v2.", ""},
		{[]string{"version"}, 0, "go1.", ""},
		{[]string{"nope"}, 2, "", `unknown command "nope"`},
		{[]string{"help", "nope"}, 2, "", `unknown command "nope"`},
		{[]string{"--nope"}, 2, "", "flag provided but not defined: -nope"},
		{[]string{"serve", "-nope"}, 2, "", "eventhook serve: flag provided but not defined: -nope"},
		{[]string{"publish", "-batch", "0", "-type", "x.y"}, 2, "", "-batch 0"},
		{[]string{"tail", "-nope"}, 2, "", "eventhook tail -h"},
		{[]string{"config"}, 2, "", "eventhook config check"},
		{[]string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, eh, tt.args...)
			cmd.Dir = dir
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("exit %d; want %d (stdout %q, stderr %q)", code, tt.code, stdout.String(), stderr.String())
			}
			if tt.stdout == "" && stdout.Len() > 0 || !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q; want %q", stdout.String(), tt.stdout)
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			switch {
			case tt.stderrLine == "" && stderr.Len() > 0:
				t.Errorf("stderr %q; want nothing", stderr.String())
			case tt.stderrLine != "" && (len(lines) != 1 || !strings.Contains(lines[0], tt.stderrLine) ||
				!strings.Contains(lines[0], "help")):
				t.Errorf("stderr %q; want one line with %q and how to get help", stderr.String(), tt.stderrLine)
			}
		})
	}
}
