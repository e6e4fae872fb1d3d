// Command eventhook is Flovyn's event sidecar: it accepts lifecycle events and generic streams over a Unix socket or
// local HTTP, publishes them to NATS JetStream (or an in-memory bus), and serves filtered Server-Sent Events streams.
//
// Usage:
//
//	eventhook [serve] [-config config.yaml]   run the daemon (the default command)
//	eventhook publish …                       publish events over the socket or a URL
//	eventhook tail …                          follow a stream in the terminal
//	eventhook config check [-config …]        print the effective configuration, or what is wrong with it
//	eventhook version                         print the version
//	eventhook help [command]                  print the usage (also -h, --help, <command> -h)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only when EVENTHOOK_PPROF names an address
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flovyn/eventhook/internal/memlimit"
	"github.com/flovyn/eventhook/sidecar"
	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/natsbus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `eventhook: Flovyn's event sidecar (NATS JetStream).

Usage: eventhook [command] [flags]

Commands:
  serve [-config config.yaml]   run the daemon (the default); SIGTERM stops it, SIGHUP reloads auth
  publish                       publish events
  tail                          follow a stream in the terminal
  bench                         benchmark a running sidecar
  config check [-config ...]    print the effective configuration or every mistake in it
  version                       print the version (also --version)
  help [command]                print this, or the usage of a command (also <command> -h)
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 {
		switch args[0] { // the program's own flags; any other flag is serve's
		case "-h", "-help", "--help":
			cmd, args = "help", args[1:]
		case "-version", "--version":
			cmd, args = "version", args[1:]
		}
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, stdout, stderr)
	case "publish":
		return runPublish(ctx, args, stdin, stdout, stderr)
	case "bench":
		return runBench(ctx, args, stdout, stderr)
	case "tail":
		return runTail(ctx, args, stdout, stderr)
	case "config":
		if len(args) == 0 || args[0] != "check" {
			return usageError(stderr, "eventhook config", "the only subcommand is check (eventhook config check [-config config.yaml])")
		}
		return runConfigCheck(args[1:], stdout, stderr)
	case "version":
		if len(args) > 0 {
			return usageError(stderr, "eventhook version", fmt.Sprintf("unexpected argument %q", args[0]))
		}
		fmt.Fprintf(stdout, "eventhook %s (%s, nats-server v%s)\n", sidecar.Version, runtime.Version(), natsbus.ServerVersion())
		return 0
	case "help":
		switch {
		case len(args) == 0:
			fmt.Fprint(stdout, usage)
			return 0
		case len(args) == 1 && args[0] == "config":
			return runConfigCheck([]string{"-h"}, stdout, stderr)
		case len(args) == 1 && args[0] != "help" && args[0] != "version":
			return run(ctx, []string{args[0], "-h"}, stdin, stdout, stderr)
		case len(args) == 1:
			fmt.Fprint(stdout, usage)
			return 0
		}
		return usageError(stderr, "eventhook help", fmt.Sprintf("unexpected argument %q", args[1]))
	}
	return usageError(stderr, "eventhook", fmt.Sprintf("unknown command %q", cmd))
}

// usageError prints one line saying what was wrong with the command line and how to get help, and returns exit code 2.
func usageError(stderr io.Writer, name, what string) int {
	fmt.Fprintf(stderr, "%s: %s (run 'eventhook help' for help)\n", name, what)
	return exitUsage
}

const serveUsage = `Usage: eventhook [serve] [-config config.yaml]

Runs the daemon: HTTP on http.listen and the Unix socket http.unix_socket, the backend named in the configuration
(jetstream on an embedded NATS server by default). SIGTERM or SIGINT stops it gracefully; SIGHUP reloads the tokens
of the auth section. Without -config, ./config.yaml is read when it exists, else the defaults apply.

Flags:
`

const configCheckUsage = `Usage: eventhook config check [-config config.yaml]

Prints the effective configuration (defaults filled in, secrets redacted), or every mistake in the file with its line
and key. Exit status: 0 valid, 1 invalid, 2 bad command line.

Flags:
`

// loadConfig reads the configuration named by -config, after the flags in args. The default path may be absent (the
// defaults apply); a path given explicitly must exist. ok is false when the command must end with code (after -h, or
// a bad command line).
func loadConfig(fset *flag.FlagSet, args []string) (cfg *config.Config, path string, code int, ok bool, err error) {
	p := fset.String("config", "config.yaml", "configuration file (YAML)")
	if code, ok := parseCLIFlags(fset, args); !ok {
		return nil, "", code, false, nil
	}
	explicit := false
	fset.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err = config.Load(*p)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		cfg = config.Default()
		return cfg, "(defaults: no config.yaml here)", 0, true, cfg.Validate()
	}
	return cfg, *p, 0, true, err
}

func runConfigCheck(args []string, stdout, stderr io.Writer) int {
	fset := cliFlags("eventhook config check", configCheckUsage, stdout, stderr)
	cfg, path, code, ok, err := loadConfig(fset, args)
	if !ok {
		return code
	}
	if err != nil {
		fmt.Fprintln(stderr, "eventhook: config:", err)
		return 1
	}
	out, err := cfg.YAML()
	if err != nil {
		fmt.Fprintln(stderr, "eventhook: config:", err)
		return 1
	}
	fmt.Fprintf(stdout, "# effective configuration from %s\n%s", path, out)
	return 0
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := cliFlags("eventhook serve", serveUsage, stdout, stderr)
	cfg, path, code, ok, err := loadConfig(fset, args)
	if !ok {
		return code
	}
	if err != nil {
		fmt.Fprintln(stderr, "eventhook: config:", err)
		return 1
	}
	log := config.NewLogger(cfg.Log, stderr)
	if soft := memlimit.Set(); soft > 0 {
		log.Info("Go memory limit set from the container's", slog.Int64("bytes", soft))
	}
	if addr := os.Getenv("EVENTHOOK_PPROF"); addr != "" {
		// Profiling for performance work, off unless asked for: EVENTHOOK_PPROF=127.0.0.1:6060.
		go func() { log.Warn("pprof server stopped", slog.Any("err", http.ListenAndServe(addr, nil))) }()
	}
	if err := serve(ctx, cfg, path, log); err != nil {
		log.Error("eventhook stopped", slog.String("config", path), slog.Any("err", err))
		return 1
	}
	return 0
}

// serve runs the daemon until ctx is cancelled (SIGTERM or SIGINT), then shuts down in the reverse order of building:
// the HTTP server (ending the SSE streams and waiting for in-flight publishes), then the bus. SIGHUP reloads the auth
// section of the configuration file at path.
func serve(ctx context.Context, cfg *config.Config, path string, log *slog.Logger) error {
	bus, err := config.OpenBus(ctx, cfg, sidecar.FrameEncoders(cfg.Events.TenantKey), log)
	if err != nil {
		return err
	}
	defer bus.Close()
	srv, err := sidecar.NewServer(sidecar.Options{Config: cfg, Bus: bus, Logger: log})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	log.Info("eventhook serving", slog.String("version", sidecar.Version), slog.String("backend", cfg.Backend),
		slog.String("http", cfg.HTTP.Listen), slog.String("unix_socket", cfg.HTTP.UnixSocket))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, cfg, path, srv, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }() // ends when Shutdown below returns
	select {
	case err = <-errc:
		srv.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: requests still running were cut", slog.Any("err", err))
	}
	if err := <-errc; err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// reloadOnHUP reloads the tokens (auth) from the configuration file at each SIGHUP until ctx ends. The whole file must
// be valid; a change outside auth is reported and not applied (it needs a restart).
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, running *config.Config, path string, srv *sidecar.Server, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		next, err := config.Load(path)
		if err != nil {
			log.Error("SIGHUP: the configuration was not reloaded", slog.String("config", path), slog.Any("err", err))
			continue
		}
		if err := srv.ReloadAuth(next.Auth); err != nil {
			log.Error("SIGHUP: the tokens were not reloaded", slog.String("config", path), slog.Any("err", err))
			continue
		}
		log.Info("SIGHUP: tokens reloaded", slog.String("config", path), slog.Int("tokens", len(next.Auth.Tokens)))
		if changed := outsideAuth(running, next); changed != "" {
			log.Warn("SIGHUP: only auth is reloaded; restart to apply the other changes", slog.String("changed", changed))
		}
	}
}

// outsideAuth names the top-level sections of the configuration, other than auth, in which next differs from running.
func outsideAuth(running, next *config.Config) string {
	sections := func(c *config.Config) map[string]any {
		out, err := c.YAML()
		m := map[string]any{}
		if err == nil {
			_ = yaml.Unmarshal(out, &m)
		}
		return m
	}
	a, b := sections(running), sections(next)
	var changed []string
	for k := range a {
		if k != "auth" && !reflect.DeepEqual(a[k], b[k]) {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	return strings.Join(changed, ", ")
}
