package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the release version, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK       = 0 // success
	exitFailure  = 1 // an invalid configuration, or the command failed
	exitUsageErr = 2 // bad command line
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand. run receives the arguments after the command's
// name and returns the exit code.
type command struct {
	name     string
	synopsis string // arguments, as shown in usage
	summary  string
	run      func(args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order usage shows them.
func commands() []command {
	return []command{
		{"run", "[--config FILE]", "run the proxy (the default command)", runCommand},
		{"check", "[--config FILE]", "validate the configuration file and exit", checkCommand},
		{"explain", "[flags] SQL", "show a statement's class, tables and route, with the reason", dispatchExplain},
		{"version", "", "print version information", versionCommand},
		{"help", "", "show this help", helpCommand},
	}
}

// explainCommand implements `txlane explain`. It is the dispatch point for
// that command: the file that implements it sets this variable from an init
// function, so that main.go need not change. args are the arguments after
// "explain"; the result is the exit code.
var explainCommand func(args []string, stdout, stderr io.Writer) int

// dispatchExplain runs explainCommand, or says the build lacks it.
func dispatchExplain(args []string, stdout, stderr io.Writer) int {
	if explainCommand == nil {
		fmt.Fprintln(stderr, "txlane: explain is not available in this build")
		return exitFailure
	}
	return explainCommand(args, stdout, stderr)
}

// dispatch runs the command named by args[0], or run when args is empty or
// starts with a flag, and returns the exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		return versionCommand(nil, stdout, stderr)
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return runCommand(args, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "txlane: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsageErr
}

// usage writes the overall usage text.
func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage:")
	for _, c := range commands() {
		line := "txlane " + c.name
		if c.name == "run" {
			line = "txlane [run]"
		}
		if c.synopsis != "" {
			line += " " + c.synopsis
		}
		fmt.Fprintf(w, "  %-38s %s\n", line, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "--config defaults to $TXLANE_CONFIG, or txlane.yaml when that is unset.")
	fmt.Fprintln(w, "Run 'txlane COMMAND -h' for a command's flags.")
}

func helpCommand(args []string, stdout, stderr io.Writer) int {
	usage(stdout)
	return exitOK
}

// newFlagSet returns a flag set for the named command whose usage shows
// synopsis followed by the flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("txlane "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: txlane %s %s\n", name, synopsis)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// configFlag defines --config on fs. Its default is $TXLANE_CONFIG, or
// txlane.yaml when that is unset or empty.
func configFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("TXLANE_CONFIG")
	if def == "" {
		def = "txlane.yaml"
	}
	return fs.String("config", def, "configuration `FILE` ($TXLANE_CONFIG if set)")
}

// parseFlags parses args into fs and rejects positional arguments when
// maxArgs is 0. ok is false when the command should exit with code.
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsageErr, false // flag has reported the error and the usage
	}
	if fs.NArg() > maxArgs {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(maxArgs))
		fs.Usage()
		return exitUsageErr, false
	}
	return exitOK, true
}

// runCommand loads the configuration and runs the proxy until it stops.
func runCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "[--config FILE]", stderr)
	fs.Usage = func() {
		usage(stderr)
		fmt.Fprintln(stderr, "\nFlags of run:")
		fs.PrintDefaults()
	}
	path := configFlag(fs)
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	cfg, src, ok := loadConfig(*path, stderr)
	if !ok {
		return exitFailure
	}
	if err := serve(cfg, src, *path); err != nil {
		fmt.Fprintf(stderr, "txlane: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// releaseVersion is txlane's release version: the one set at build time,
// or the module version of a `go install module@version`, or "dev".
func releaseVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// versionCommand prints the version, then the Go version and the versions of
// the modules that shape txlane's behaviour, as far as the build records them.
func versionCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", stderr)
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	v, goVersion := releaseVersion(), runtime.Version()
	var deps [][2]string
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, want := range []struct{ name, path string }{
			{"pgx", "github.com/jackc/pgx/v5"},
			{"pg_query_go", "github.com/pganalyze/pg_query_go/v6"},
		} {
			for _, m := range bi.Deps {
				if m.Path != want.path {
					continue
				}
				if m.Replace != nil {
					m = m.Replace
				}
				deps = append(deps, [2]string{want.name, m.Version})
			}
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				deps = append(deps, [2]string{"commit", s.Value})
			}
		}
	}
	fmt.Fprintf(stdout, "txlane %s\n", v)
	fmt.Fprintf(stdout, "  %-12s %s\n", "go", goVersion)
	for _, d := range deps {
		fmt.Fprintf(stdout, "  %-12s %s\n", d[0], d[1])
	}
	return exitOK
}
