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

	"github.com/flovyn/eventhook/sidecar/config"

	_ "net/http/pprof"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flovyn/eventhook/sidecar"
	"gopkg.in/yaml.v3"
)

// served only when EVENTHOOK_PPROF names an address

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `eventhook: Flovyn's event sidecar (NATS JetStream).

Commands:
  serve [-config config.yaml]   run the daemon (the default); SIGTERM stops it, SIGHUP reloads auth
  publish                       publish events (eventhook publish -h)
  tail                          follow a stream (eventhook tail -h)
  bench                         benchmark a running sidecar (eventhook bench -h)
  config check [-config ...]    print the effective configuration or the error
  version                       print the version
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, stderr)
	case "publish":
		return runPublish(ctx, args, stdin, stdout, stderr)
	case "bench":
		return runBench(ctx, args, stdout, stderr)
	case "tail":
		return runTail(ctx, args, stdout, stderr)
	case "config":
		if len(args) == 0 || args[0] != "check" {
			fmt.Fprintln(stderr, "usage: eventhook config check [-config config.yaml]")
			return 2
		}
		return runConfigCheck(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "eventhook", sidecar.Version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "eventhook: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// loadConfig reads the configuration named by -config. The default path may be absent (the defaults apply); a path
// given explicitly must exist.
func loadConfig(fset *flag.FlagSet, args []string) (*config.Config, string, error) {
	path := fset.String("config", "config.yaml", "configuration file (YAML)")
	if err := fset.Parse(args); err != nil {
		return nil, "", err
	}
	explicit := false
	fset.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := config.Load(*path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		cfg = config.Default()
		return cfg, "(defaults: no config.yaml here)", cfg.Validate()
	}
	return cfg, *path, err
}

func runConfigCheck(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("config check", flag.ContinueOnError)
	fset.SetOutput(stderr)
	cfg, path, err := loadConfig(fset, args)
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

func runServe(ctx context.Context, args []string, stderr io.Writer) int {
	fset := flag.NewFlagSet("serve", flag.ContinueOnError)
	fset.SetOutput(stderr)
	cfg, path, err := loadConfig(fset, args)
	if err != nil {
		fmt.Fprintln(stderr, "eventhook: config:", err)
		return 1
	}
	log := config.NewLogger(cfg.Log, stderr)
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
