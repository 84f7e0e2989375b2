package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/txlane/txlane/config"
)

// checkCommand validates the configuration file, and the auth_file it
// names, without running the proxy.
// Each problem goes to stderr as FILE:LINE:COL: message and the exit code is
// 1; a valid file prints FILE: ok and exits 0.
func checkCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "[--config FILE]", stderr)
	path := configFlag(fs)
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	cfg, _, ok := loadConfig(*path, stderr)
	if !ok {
		return exitFailure
	}
	if _, err := authOptions(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return exitOK
}

// loadConfig loads the configuration file at path, with the source of each
// value. On failure it writes every problem to stderr, one per line, and
// returns false.
func loadConfig(path string, stderr io.Writer) (*config.Config, config.Sources, bool) {
	cfg, src, err := config.LoadWithSources(path)
	if err == nil {
		return cfg, src, true
	}
	var problems config.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(stderr, p)
		}
	} else {
		fmt.Fprintf(stderr, "txlane: %v\n", err)
	}
	return nil, nil, false
}
